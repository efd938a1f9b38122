"""Render General MIDI songs to per-stem audio with fluidsynth, in the MUSDB18-HQ layout.

    OUT/train/<song>/{mixture,drums,bass,other}.wav
    OUT/valid/<song>/{mixture,drums,bass,other}.wav
    OUT/manifest.json

Each song is split into stems (midi_split), every stem is rendered alone by fluidsynth
(44.1 kHz stereo), stems are padded to equal length and scaled together so the loudest of the
mixture and stems peaks at ``PEAK``, then stored as 16-bit PCM with the mixture written as the
exact integer sum of the stems: read back as float, ``mixture == drums + bass + other``
exactly. Training songs also get ``--augment K`` versions ``<song>@aug1..K`` with a random
transposition, tempo and instrument substitution within GM families (deterministic by seed).
Song folders appear atomically (rendered into a temporary folder, then renamed), so an
interrupted run resumes where it stopped. See models/data/DATA.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from . import midi_split
from .midi_split import STEMS, MidiSplitError

DEFAULT_MIDI_DIR = Path("/usr/share/games/openttd/baseset/openmsx")
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 44100
GAIN = 0.5  # fluidsynth master gain (-g)
PEAK = 0.9  # the loudest of mixture and stems is scaled to this peak
SUBTYPE = "PCM_16"
TRANSPOSE_CHOICES = (-3, -2, -1, 1, 2, 3)
TEMPO_RANGE = (0.9, 1.1)
SUBSTITUTION_PROBABILITY = 0.5
MANIFEST = "manifest.json"
FORMAT = "rtsep-rendered-v1"
AUDIO_FILES = ("mixture", *STEMS)

# The fixed, named song-level validation split (openmsx file names without .mid): six songs of
# five composers and styles, each with drums and a real GM bass program, so every stem has a
# clean reference. The other 25 songs (chemistry_lab, the song without drums, among them) train.
VALID_SONGS: tuple[str, ...] = (
    "say_what_redfarn",  # Jim Redfarn: boogie piano, slap bass, two drum tracks
    "midnight_snow_run",  # Tistou Blomberg: two bass parts, synth lead
    "train_filled_with_cash",  # imuh3: synth bass, guitar, steel drums
    "the_fast_route",  # mimm: acoustic bass, dense drums
    "modern_motion",  # Kyle Timmerman: piano, synth bass, orchestral hits
    "tttheme2",  # -lucas-, the OpenTTD title theme: orchestral, two bass parts
)


class RenderError(Exception):
    """A user-facing rendering problem (missing tool or file, bad option, failed render)."""


@dataclass(frozen=True)
class Job:
    """One song version to render."""

    name: str  # folder name: <song> or <song>@aug<k>
    song: str
    midi: str
    split: str  # "train" | "valid"
    soundfont: str
    transpose: int = 0
    tempo: float = 1.0
    substitution: tuple[tuple[int, int], ...] = field(default=())

    @property
    def augmented(self) -> bool:
        return "@" in self.name

    def params(self) -> dict:
        """The parameters that define this version's audio (compared on resume)."""
        return {
            "midi": self.midi,
            "midi_sha1": _sha1(self.midi),
            "soundfont": self.soundfont,
            "transpose": self.transpose,
            "tempo": self.tempo,
            "substitution": {str(a): b for a, b in self.substitution},
            "gain": GAIN,
            "peak": PEAK,
            "sample_rate": SAMPLE_RATE,
        }


def _sha1(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderError("fluidsynth not found: install the Debian package fluidsynth")
    return exe


def check_soundfont(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise RenderError(
            f"SoundFont not found: {p}: install the Debian package fluid-soundfont-gm "
            "(or pass --soundfont FILE.sf2)"
        )
    with open(p, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise RenderError(f"not a SoundFont 2 file: {p}")
    return p


def fluidsynth_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.stdout.splitlines():
        if "version" in line.lower():
            return line.strip()
    return "unknown"


def fluidsynth_command(exe: str, soundfont: str, midi: str, wav: str) -> list[str]:
    """The fluidsynth call for one stem: no shell, no MIDI input, fast render to float WAV."""
    return [
        exe, "-n", "-i", "-q",
        "-g", str(GAIN),
        "-r", str(SAMPLE_RATE),
        "-O", "float", "-T", "wav",
        "-F", wav,
        soundfont, midi,
    ]  # fmt: skip


def render_stem(exe: str, soundfont: str, midi: str, wav: str) -> np.ndarray:
    """Render one MIDI file to audio, float32[frames, 2]."""
    cmd = fluidsynth_command(exe, soundfont, midi, wav)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.SubprocessError) as e:
        raise RenderError(f"fluidsynth failed on {midi}: {e}") from e
    if proc.returncode != 0 or not os.path.isfile(wav):
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        detail = msg[-1] if msg else f"exit code {proc.returncode}"
        raise RenderError(f"fluidsynth failed on {midi}: {detail}")
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise RenderError(f"fluidsynth wrote {sr} Hz, expected {SAMPLE_RATE} Hz")
    return audio


def _folder_complete(folder: Path) -> bool:
    """All four files present, readable, of equal length (a finished song folder)."""
    try:
        frames = {sf.info(str(folder / f"{n}.wav")).frames for n in AUDIO_FILES}
    except (OSError, RuntimeError):
        return False
    return len(frames) == 1 and frames.pop() > 0


def quantize_stems(stems: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """Pad stems to equal length, scale them together and quantize to int16.

    Returns int16 arrays for every stem plus "mixture" (the exact integer sum), and the scale
    applied to fluidsynth's output."""
    length = max(len(a) for a in stems.values())
    padded = {}
    for name, a in stems.items():
        p = np.zeros((length, 2), np.float64)
        p[: len(a)] = a
        padded[name] = p
    mix = sum(padded.values())
    peak = max(float(np.abs(mix).max()), *(float(np.abs(a).max()) for a in padded.values()))
    if peak <= 0:
        raise RenderError("the rendered song is silent")
    scale = PEAK / peak
    out = {n: np.round(a * scale * 32768).astype(np.int32) for n, a in padded.items()}
    mix_i = sum(out.values())
    if np.abs(mix_i).max() > 32767:  # cannot happen with PEAK < 1, kept as a guard
        raise RenderError("mixture overflows 16 bits")
    result = {n: a.astype(np.int16) for n, a in out.items()}
    result["mixture"] = mix_i.astype(np.int16)
    return result, scale


def render_song(job: Job, out: Path, exe: str) -> dict:
    """Render one song version into ``out/<split>/<name>/``; returns its manifest entry."""
    try:
        return _render_song(job, out, exe)
    except (OSError, RuntimeError) as e:  # disk full, permissions, unreadable audio
        raise RenderError(f"{job.name}: {e}") from e


def _render_song(job: Job, out: Path, exe: str) -> dict:
    final = out / job.split / job.name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{job.name}-", dir=final.parent))
    try:
        try:
            mid = midi_split.load_midi(job.midi)
            stems_midi, info = midi_split.split_midi(mid, job.song)
        except MidiSplitError as e:
            raise RenderError(str(e)) from e
        subst = dict(job.substitution)
        audio: dict[str, np.ndarray] = {}
        for stem in STEMS:
            m = stems_midi[stem]
            if midi_split.count_notes(m) == 0:
                audio[stem] = np.zeros((1, 2), np.float32)
                continue
            if job.transpose:
                m = midi_split.transpose(m, job.transpose)
            if job.tempo != 1.0:
                m = midi_split.scale_tempo(m, job.tempo)
            if subst:
                m = midi_split.substitute_programs(m, subst)
            mid_path = tmp / f"{stem}.mid"
            m.save(str(mid_path))
            audio[stem] = render_stem(
                exe, job.soundfont, str(mid_path), str(tmp / f"{stem}.f32.wav")
            )
            (tmp / f"{stem}.f32.wav").unlink()
            mid_path.unlink()
        pcm, scale = quantize_stems(audio)
        for name in AUDIO_FILES:
            sf.write(str(tmp / f"{name}.wav"), pcm[name], SAMPLE_RATE, subtype=SUBTYPE)
        frames = len(pcm["mixture"])
        os.chmod(tmp, 0o755)  # mkdtemp made it private
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _entry(job, info, frames, scale)


def _entry(job: Job, info: midi_split.SplitInfo, frames: int, scale: float) -> dict:
    return {
        "song": job.song,
        "split": job.split,
        "augmented": job.augmented,
        "params": job.params(),
        "frames": frames,
        "seconds": round(frames / SAMPLE_RATE, 3),
        "scale": scale,
        "has_drums": info.has_drums,
        "has_gm_bass_program": info.has_gm_bass_program,
        "bass_source": info.bass_source,
        "bass": info.bass_description(),
        "exclude_stems": list(info.exclude_stems),
    }


def list_songs(midi_dir: str | Path) -> list[Path]:
    d = Path(midi_dir)
    if not d.is_dir():
        raise RenderError(f"MIDI folder not found: {d}")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise RenderError(f"no .mid files in {d}")
    bad = [p.stem for p in files if "@" in p.stem or p.stem.startswith(".")]
    if bad:
        raise RenderError(f"song names may not contain '@' or start with '.': {bad[0]}")
    return files


def choose_valid(songs: Sequence[str], valid: Sequence[str] | None = None) -> tuple[str, ...]:
    """The validation songs: ``valid`` if given (all must exist), else VALID_SONGS present in
    ``songs``; for a folder with none of them, every fifth song in a fixed hashed order."""
    if valid:
        missing = [v for v in valid if v not in songs]
        if missing:
            raise RenderError(f"validation song not in the MIDI folder: {missing[0]}")
        return tuple(valid)
    chosen = tuple(v for v in VALID_SONGS if v in songs)
    if chosen or len(songs) < 2:
        return chosen
    ranked = sorted(songs, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return tuple(sorted(ranked[: max(1, len(songs) // 5)]))


def plan_jobs(
    midi_dir: str | Path,
    soundfonts: Sequence[str | Path],
    augment: int,
    seed: int,
    valid: Sequence[str] | None = None,
    rotate_fonts: bool = False,
) -> list[Job]:
    """Every song version to render. Originals use the first SoundFont (with ``rotate_fonts``,
    training song number i uses SoundFont i mod n: for generated songs, where a new composition
    is cheaper than an augmented copy); augmented version k uses SoundFont k mod n (so with two
    SoundFonts @aug1 uses the second one)."""
    files = list_songs(midi_dir)
    songs = [p.stem for p in files]
    valid_set = set(choose_valid(songs, valid))
    fonts = [str(Path(s).resolve()) for s in soundfonts]
    jobs = []
    n_train = 0
    for path in files:
        song = path.stem
        split = "valid" if song in valid_set else "train"
        font = fonts[n_train % len(fonts)] if rotate_fonts and split == "train" else fonts[0]
        jobs.append(Job(song, song, str(path.resolve()), split, font))
        if split != "train":
            continue
        n_train += 1
        programs: set[int] | None = None
        for k in range(1, augment + 1):
            rng = random.Random(f"rtsep:{seed}:{song}:{k}")
            transpose = rng.choice(TRANSPOSE_CHOICES)
            tempo = round(rng.uniform(*TEMPO_RANGE), 3)
            if programs is None:
                try:
                    programs = midi_split.programs_used(midi_split.load_midi(path))
                except MidiSplitError as e:
                    raise RenderError(str(e)) from e
            subst = midi_split.random_substitution(programs, rng, SUBSTITUTION_PROBABILITY)
            jobs.append(
                Job(
                    f"{song}@aug{k}", song, str(path.resolve()), split,
                    fonts[k % len(fonts)], transpose, tempo, tuple(sorted(subst.items())),
                )
            )  # fmt: skip
    return jobs


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _read_manifest(out: Path) -> dict:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def render_dataset(
    out: str | Path,
    midi_dir: str | Path = DEFAULT_MIDI_DIR,
    soundfonts: Sequence[str | Path] = (DEFAULT_SOUNDFONT,),
    augment: int = 2,
    jobs: int = 2,
    seed: int = 0,
    valid: Sequence[str] | None = None,
    rotate_fonts: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Render the whole data set (resuming) and write ``out/manifest.json``; returns it."""
    exe = find_fluidsynth()
    if not soundfonts:
        raise RenderError("no SoundFont given")
    fonts = [check_soundfont(s) for s in soundfonts]
    if augment < 0:
        raise RenderError(f"--augment must be >= 0, got {augment}")
    if jobs < 1:
        raise RenderError(f"--jobs must be >= 1, got {jobs}")
    plan = plan_jobs(midi_dir, fonts, augment, seed, valid, rotate_fonts)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for split in ("train", "valid"):
            (out / split).mkdir(exist_ok=True)
            for stale in (out / split).glob(".tmp-*"):  # left by an interrupted run
                shutil.rmtree(stale, ignore_errors=True)
    except OSError as e:
        raise RenderError(f"cannot write to {out}: {e}") from e

    old = _read_manifest(out).get("songs", {})
    manifest = {
        "format": FORMAT,
        "sample_rate": SAMPLE_RATE,
        "stems": list(STEMS),
        "subsets": {
            "train": [j.name for j in plan if j.split == "train"],
            "valid": [j.name for j in plan if j.split == "valid"],
        },
        "valid_songs": sorted({j.song for j in plan if j.split == "valid"}),
        "source": {
            "midi_dir": str(Path(midi_dir).resolve()),
            "soundfonts": [str(f) for f in fonts],
            "soundfont_of_original": ("training song i: soundfonts[i % len(soundfonts)]"
                                      if rotate_fonts else "soundfonts[0]"),
        },
        "render": {
            "fluidsynth": fluidsynth_version(exe),
            "command": " ".join(fluidsynth_command("fluidsynth", "SF2", "stem.mid", "out.wav")),
            "gain": GAIN,
            "reverb_chorus": "fluidsynth defaults (on)",
            "sample_rate": SAMPLE_RATE,
            "channels": 2,
            "subtype": SUBTYPE,
            "peak": PEAK,
            "mixture": "exact sum of the stems (16-bit integers)",
        },
        "augmentation": {
            "per_train_song": augment,
            "seed": seed,
            "transpose_semitones": list(TRANSPOSE_CHOICES),
            "tempo_range": list(TEMPO_RANGE),
            "substitution_probability": SUBSTITUTION_PROBABILITY,
            "substitution": "program -> another program of the same GM family of 8 (0-95 only)",
            "soundfont_of_aug_k": "soundfonts[k % len(soundfonts)]",
        },
        "songs": {},
    }
    todo = []
    for job in plan:
        folder = out / job.split / job.name
        prev = old.get(job.name)
        same = (
            prev is not None
            and prev.get("params") == job.params()
            and prev.get("split") == job.split
        )
        if same and _folder_complete(folder):
            manifest["songs"][job.name] = prev
        else:
            todo.append(job)
    skipped = len(plan) - len(todo)
    _write_json(out / MANIFEST, _ordered(manifest, plan))
    say = log or (lambda s: print(s, file=sys.stderr))
    say(
        f"rendering {len(todo)} of {len(plan)} song versions into {out} "
        f"({skipped} already complete), {jobs} job(s)"
    )

    start = time.monotonic()
    bar = _progress(len(plan), skipped, progress)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(render_song, job, out, exe): job for job in todo}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = pending.pop(fut)
                        manifest["songs"][job.name] = fut.result()
                        _write_json(out / MANIFEST, _ordered(manifest, plan))
                        if bar is not None:
                            bar.set_postfix_str(job.name, refresh=False)
                            bar.update(1)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    finally:
        if bar is not None:
            bar.close()
    manifest["render"]["seconds_last_run"] = round(time.monotonic() - start, 1)
    manifest = _ordered(manifest, plan)
    _write_json(out / MANIFEST, manifest)
    return manifest


def _ordered(manifest: dict, plan: Sequence[Job]) -> dict:
    songs = manifest["songs"]
    manifest = dict(manifest)
    manifest["songs"] = {j.name: songs[j.name] for j in plan if j.name in songs}
    return manifest


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="song", desc="render", file=sys.stderr)


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rtsep data render``."""
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder")
    parser.add_argument(
        "--midi",
        metavar="DIR",
        default=str(DEFAULT_MIDI_DIR),
        help="folder of General MIDI files (default: %(default)s, Debian openttd-openmsx)",
    )
    parser.add_argument(
        "--soundfont",
        metavar="SF2",
        action="append",
        default=None,
        help=f"SoundFont, repeatable (default: {DEFAULT_SOUNDFONT}, Debian fluid-soundfont-gm); "
        "originals use the first, augmented version k uses number k mod n",
    )
    parser.add_argument(
        "--augment",
        metavar="K",
        type=int,
        default=2,
        help="augmented versions per training song (default: %(default)s)",
    )
    parser.add_argument(
        "--jobs", metavar="N", type=int, default=2, help="parallel renders (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="augmentation seed (default: %(default)s)"
    )
    parser.add_argument(
        "--valid",
        metavar="SONG",
        action="append",
        default=None,
        help="validation song (file name without .mid), repeatable "
        "(default: the fixed openmsx validation songs)",
    )
    parser.add_argument(
        "--rotate-soundfonts",
        action="store_true",
        help="training originals cycle through the SoundFonts too (song i uses number i mod n; "
        "for generated songs, see `rtsep data compose`)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_render(args: argparse.Namespace) -> int:
    """Run ``rtsep data render``; returns the exit code."""
    try:
        manifest = render_dataset(
            out=args.out,
            midi_dir=args.midi,
            soundfonts=args.soundfont or [DEFAULT_SOUNDFONT],
            augment=args.augment,
            jobs=args.jobs,
            seed=args.seed,
            valid=getattr(args, "valid", None),
            rotate_fonts=getattr(args, "rotate_soundfonts", False),
            progress=not getattr(args, "no_progress", False),
        )
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    songs = manifest["songs"]
    secs = sum(e["seconds"] for e in songs.values())
    excluded = sorted({e["song"] for e in songs.values() if e.get("exclude_stems")})
    n_train, n_valid = len(manifest["subsets"]["train"]), len(manifest["subsets"]["valid"])
    print(
        f"rendered {n_train} train and {n_valid} valid song versions "
        f"({secs / 60:.1f} min of audio) into {args.out}"
        + (f"; 'other' kept out of training for: {', '.join(excluded)}" if excluded else "")
    )
    return 0


__all__ = [
    "DEFAULT_MIDI_DIR",
    "DEFAULT_SOUNDFONT",
    "Job",
    "RenderError",
    "VALID_SONGS",
    "add_render_arguments",
    "plan_jobs",
    "render_dataset",
    "render_song",
    "run_render",
]
