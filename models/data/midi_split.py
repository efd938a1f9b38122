"""Split a General MIDI song into per-stem MIDI files, and MIDI-level augmentation.

Stems (see models/data/DATA.md for the rule and its outcome on the openmsx songs):

- ``drums``: every note on the GM drum channel (channel 10, zero-based 9);
- ``bass``: notes played with a GM bass program (1-based 33-40, zero-based 32-39) whose part
  (track, channel, program) has a median pitch at most ``BASS_PROGRAM_MAX_MEDIAN``; a bass patch
  that plays far above that (a melody doubled on a bass patch) goes to ``other``;
- ``other``: everything else.

A song with no bass part by that rule has its lowest clearly bass-like part relabelled as bass:
median pitch at most ``RELABEL_MAX_MEDIAN``, mostly monophonic (``RELABEL_MIN_MONO``, octave
doublings count as one note), enough notes; bass-like parts that double it (sharing
``RELABEL_DOUBLING`` of their onsets with it, e.g. a guitar doubling the piano's left hand) go
with it. If no part qualifies, the song's ``other`` stem would contain its bass line, so the
song is marked ``exclude_stems = ("other",)``: its ``other`` must be kept out of training.

Every stem file keeps all tracks and every non-note message (tempo, meta, program, control,
pitch bend), only note on/off messages of other stems are removed (their delta time is carried
to the next kept message), so all stems have identical timing and length.

Program assignment follows playback: events of all tracks are merged in time order and each
note takes the program its channel has at that moment, as a synthesizer would.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

STEMS: tuple[str, ...] = ("drums", "bass", "other")
DRUM_CHANNEL = 9
BASS_PROGRAMS = range(32, 40)  # zero-based GM programs 32-39 (1-based 33-40)
BASS_PROGRAM_MAX_MEDIAN = 60.0  # a bass-patch part with a higher median pitch is a melody
RELABEL_MAX_MEDIAN = 48.0  # C3: a relabelled bass line must sit this low (median pitch)
RELABEL_MIN_MONO = 0.6  # fraction of its notes starting with no other note (octaves aside)
RELABEL_MIN_NOTES = 32
RELABEL_DOUBLING = 0.8  # a candidate sharing this fraction of its onsets with it doubles it
# GM families that instrument substitution may use: 0-95 (piano ... synth pad); synth
# effects, ethnic, percussive and sound effects (96-127) are left as they are.
SUBSTITUTABLE_FAMILIES = range(0, 12)


class MidiSplitError(ValueError):
    """The MIDI file cannot be split (unreadable or no notes)."""


PartKey = tuple[int, int, int]  # (track, channel, program); program -1 on the drum channel


@dataclass(frozen=True)
class PartInfo:
    """One part of a song: the notes of one track on one channel with one program."""

    track: int
    channel: int
    program: int  # zero-based GM program, -1 for the drum channel
    n_notes: int
    median_pitch: float
    mono_fraction: float
    stem: str
    reason: str

    @property
    def key(self) -> PartKey:
        return (self.track, self.channel, self.program)


@dataclass(frozen=True)
class SplitInfo:
    """How a song was split: per-part stems and per-song flags."""

    name: str
    has_drums: bool
    has_gm_bass_program: bool  # any note played with a GM bass program
    bass_source: str  # "gm-program" | "relabelled" | "none"
    relabelled: tuple[PartKey, ...]
    exclude_stems: tuple[str, ...]
    parts: tuple[PartInfo, ...] = field(default=())

    def bass_description(self) -> str:
        """Human-readable bass source, e.g. 'relabelled track 2 ch 1 (prog 1)'."""
        if self.bass_source == "gm-program":
            progs = sorted({p.program for p in self.parts if p.stem == "bass"})
            return "GM program " + ", ".join(str(p + 1) for p in progs)
        if self.bass_source == "relabelled":
            return "relabelled " + "; ".join(
                f"track {t} ch {c + 1} (program {p + 1})" for t, c, p in self.relabelled
            )
        return "none"

    def to_json(self) -> dict:
        return {
            "has_drums": self.has_drums,
            "has_gm_bass_program": self.has_gm_bass_program,
            "bass_source": self.bass_source,
            "bass": self.bass_description(),
            "relabelled": [list(k) for k in self.relabelled],
            "exclude_stems": list(self.exclude_stems),
            "parts": [
                {
                    "track": p.track,
                    "channel": p.channel,
                    "program": p.program,
                    "notes": p.n_notes,
                    "median_pitch": p.median_pitch,
                    "mono_fraction": round(p.mono_fraction, 3),
                    "stem": p.stem,
                    "reason": p.reason,
                }
                for p in self.parts
            ],
        }


@dataclass
class _Note:
    part: PartKey
    pitch: int
    on: int  # absolute tick
    off: int | None
    on_ref: tuple[int, int]  # (track, index) of the note_on message
    off_ref: tuple[int, int] | None = None


def load_midi(path: str | Path) -> mido.MidiFile:
    """Read a MIDI file, raising MidiSplitError with the path on failure."""
    try:
        return mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise MidiSplitError(f"cannot read MIDI file {path}: {e}") from e


def _is_note_on(msg: mido.Message) -> bool:
    return msg.type == "note_on" and msg.velocity > 0


def _is_note_off(msg: mido.Message) -> bool:
    return msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0)


def _merged_events(mid: mido.MidiFile) -> list[tuple[int, int, int, mido.Message]]:
    events = []
    for ti, track in enumerate(mid.tracks):
        tick = 0
        for i, msg in enumerate(track):
            tick += msg.time
            events.append((tick, ti, i, msg))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return events


def _collect_notes(mid: mido.MidiFile) -> tuple[list[_Note], int]:
    """All notes with their part, in playback order; also the song's last tick."""
    program = [0] * 16
    pending: dict[tuple[int, int], deque[_Note]] = defaultdict(deque)
    notes: list[_Note] = []
    last_tick = 0
    for tick, ti, i, msg in _merged_events(mid):
        last_tick = max(last_tick, tick)
        if msg.type == "program_change":
            program[msg.channel] = msg.program
        elif _is_note_on(msg):
            prog = -1 if msg.channel == DRUM_CHANNEL else program[msg.channel]
            note = _Note((ti, msg.channel, prog), msg.note, tick, None, (ti, i))
            notes.append(note)
            pending[(msg.channel, msg.note)].append(note)
        elif _is_note_off(msg):
            queue = pending.get((msg.channel, msg.note))
            if queue:
                note = queue.popleft()
                note.off = tick
                note.off_ref = (ti, i)
    for note in notes:
        if note.off is None:
            note.off = last_tick
    return notes, last_tick


def _mono_fraction(pitch: np.ndarray, on: np.ndarray, off: np.ndarray, tol: int) -> float:
    """Fraction of notes during whose start (plus ``tol`` ticks) no other note of the same
    part sounds, octave doublings aside (a bass line doubled in octaves is still one line)."""
    if len(on) == 0:
        return 0.0
    probe = on + tol
    sounding = (on[None, :] <= probe[:, None]) & (off[None, :] > probe[:, None])
    sounding &= (pitch[None, :] - pitch[:, None]) % 12 != 0
    return float(np.mean(~sounding.any(axis=1)))


def _shared_onsets(a: np.ndarray, b: np.ndarray, tol: int) -> float:
    """Fraction of the sorted onsets ``a`` that lie within ``tol`` ticks of an onset in ``b``."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    i = np.clip(np.searchsorted(b, a), 1, len(b) - 1) if len(b) > 1 else np.zeros_like(a)
    near = np.minimum(np.abs(b[i] - a), np.abs(b[np.maximum(i - 1, 0)] - a))
    return float(np.mean(near <= tol))


def analyze(mid: mido.MidiFile, name: str = "") -> SplitInfo:
    """Decide the stem of every part of a song (see the module docstring for the rule)."""
    info, _ = _analyze(mid, name)
    return info


def _analyze(mid: mido.MidiFile, name: str) -> tuple[SplitInfo, list[_Note]]:
    notes, _ = _collect_notes(mid)
    if not notes:
        raise MidiSplitError(f"{name or 'MIDI file'}: no notes")
    by_part: dict[PartKey, list[_Note]] = defaultdict(list)
    for n in notes:
        by_part[n.part].append(n)
    tol = max(1, mid.ticks_per_beat // 16)

    stats = {}
    onsets: dict[PartKey, np.ndarray] = {}
    for key, ns in by_part.items():
        pitches = np.array([n.pitch for n in ns])
        on = np.array([n.on for n in ns], dtype=np.int64)
        off = np.array([n.off for n in ns], dtype=np.int64)
        stats[key] = (len(ns), float(np.median(pitches)), _mono_fraction(pitches, on, off, tol))
        onsets[key] = np.unique(on)

    stem: dict[PartKey, str] = {}
    reason: dict[PartKey, str] = {}
    for key, (_, median, _) in stats.items():
        _, channel, program = key
        if channel == DRUM_CHANNEL:
            stem[key], reason[key] = "drums", "drum channel"
        elif program in BASS_PROGRAMS and median <= BASS_PROGRAM_MAX_MEDIAN:
            stem[key], reason[key] = "bass", "GM bass program"
        elif program in BASS_PROGRAMS:
            stem[key] = "other"
            reason[key] = f"GM bass program above median pitch {BASS_PROGRAM_MAX_MEDIAN:g}"
        else:
            stem[key], reason[key] = "other", "not drums or bass"

    has_drums = any(s == "drums" for s in stem.values())
    has_gm_bass = any(k[2] in BASS_PROGRAMS and k[1] != DRUM_CHANNEL for k in stats)
    relabelled: tuple[PartKey, ...] = ()
    if any(s == "bass" for s in stem.values()):
        bass_source = "gm-program"
    else:
        candidates = [
            k
            for k, (n, median, mono) in stats.items()
            if stem[k] == "other"
            and n >= RELABEL_MIN_NOTES
            and median <= RELABEL_MAX_MEDIAN
            and mono >= RELABEL_MIN_MONO
        ]
        if candidates:
            lowest = min(candidates, key=lambda k: (stats[k][1], k))
            relabelled = tuple(
                sorted(
                    k
                    for k in candidates
                    if k == lowest
                    or _shared_onsets(onsets[k], onsets[lowest], tol) >= RELABEL_DOUBLING
                )
            )
            for k in relabelled:
                stem[k] = "bass"
                reason[k] = "relabelled: low, monophonic line"
            bass_source = "relabelled"
        else:
            bass_source = "none"
    exclude = ("other",) if bass_source == "none" else ()

    parts = tuple(
        PartInfo(k[0], k[1], k[2], stats[k][0], stats[k][1], stats[k][2], stem[k], reason[k])
        for k in sorted(stats)
    )
    info = SplitInfo(name, has_drums, has_gm_bass, bass_source, relabelled, exclude, parts)
    return info, notes


def split_midi(mid: mido.MidiFile, name: str = "") -> tuple[dict[str, mido.MidiFile], SplitInfo]:
    """Split a song into one MidiFile per stem (keys of STEMS), all with identical timing."""
    info, notes = _analyze(mid, name)
    part_stem = {p.key: p.stem for p in info.parts}
    owner: dict[tuple[int, int], str] = {}
    for n in notes:
        s = part_stem[n.part]
        owner[n.on_ref] = s
        if n.off_ref is not None:
            owner[n.off_ref] = s
    out = {}
    for s in STEMS:
        stem_mid = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
        for ti, track in enumerate(mid.tracks):
            new = mido.MidiTrack()
            carry = 0
            for i, msg in enumerate(track):
                o = owner.get((ti, i))
                if o is not None and o != s:
                    carry += msg.time
                    continue
                new.append(msg.copy(time=msg.time + carry))
                carry = 0
            if carry and new and new[-1].type != "end_of_track":
                new.append(mido.MetaMessage("end_of_track", time=carry))
            stem_mid.tracks.append(new)
        out[s] = stem_mid
    return out, info


def count_notes(mid: mido.MidiFile) -> int:
    return sum(1 for track in mid.tracks for msg in track if _is_note_on(msg))


def split_file(path: str | Path, out_dir: str | Path) -> SplitInfo:
    """Split the MIDI file at ``path`` and write ``out_dir/<stem>.mid`` for every stem."""
    path = Path(path)
    stems, info = split_midi(load_midi(path), path.stem)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, m in stems.items():
        m.save(str(out_dir / f"{s}.mid"))
    return info


# --------------------------------------------------------------------------------------------
# MIDI-level augmentation. Each function returns a new MidiFile; apply the same parameters to
# every stem of a song so the stems stay in time and in key with each other.


def _copy(mid: mido.MidiFile) -> mido.MidiFile:
    new = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
    for track in mid.tracks:
        new.tracks.append(mido.MidiTrack(msg.copy() for msg in track))
    return new


def transpose(mid: mido.MidiFile, semitones: int) -> mido.MidiFile:
    """Shift every note by ``semitones``, except on the drum channel (drum notes are kit
    pieces, not pitches). Notes pushed outside 0..127 are moved by octaves back into range."""
    new = _copy(mid)
    if semitones == 0:
        return new
    for track in new.tracks:
        for i, msg in enumerate(track):
            if msg.type in ("note_on", "note_off", "polytouch") and msg.channel != DRUM_CHANNEL:
                n = msg.note + semitones
                while n > 127:
                    n -= 12
                while n < 0:
                    n += 12
                track[i] = msg.copy(note=n)
    return new


def scale_tempo(mid: mido.MidiFile, factor: float) -> mido.MidiFile:
    """Play ``factor`` times as fast (1.1 = 10 % faster, shorter) by scaling every tempo.

    A tempo event for the default 120 bpm is inserted at tick 0 so songs that rely on the
    default tempo are scaled too; a song's own tempo at tick 0 still follows and wins."""
    if factor <= 0:
        raise ValueError(f"tempo factor must be > 0, got {factor}")
    new = _copy(mid)
    for track in new.tracks:
        for i, msg in enumerate(track):
            if msg.type == "set_tempo":
                track[i] = msg.copy(tempo=max(1, min(0xFFFFFF, round(msg.tempo / factor))))
    if new.tracks:
        default = mido.MetaMessage("set_tempo", tempo=round(500000 / factor), time=0)
        new.tracks[0].insert(0, default)
    return new


def programs_used(mid: mido.MidiFile) -> set[int]:
    """Zero-based programs set by program changes outside the drum channel."""
    return {
        msg.program
        for track in mid.tracks
        for msg in track
        if msg.type == "program_change" and msg.channel != DRUM_CHANNEL
    }


def family(program: int) -> int:
    """GM family (0-15) of a zero-based program: 8 programs each."""
    return program // 8


def random_substitution(
    programs: Iterable[int], rng: random.Random, probability: float = 0.5
) -> dict[int, int]:
    """Pick, for each program, with ``probability``, another program of the same GM family.

    Families 96-127 (effects, ethnic, percussive) are never substituted. Returns only the
    programs that change."""
    mapping = {}
    for p in sorted(set(programs)):
        if family(p) not in SUBSTITUTABLE_FAMILIES or rng.random() >= probability:
            continue
        base = family(p) * 8
        mapping[p] = rng.choice([q for q in range(base, base + 8) if q != p])
    return mapping


def substitute_programs(mid: mido.MidiFile, mapping: Mapping[int, int]) -> mido.MidiFile:
    """Replace programs by ``mapping`` (zero-based), outside the drum channel only; a mapping
    across families is refused, so bass stays bass and the stem split stays valid."""
    for a, b in mapping.items():
        if family(a) != family(b):
            raise ValueError(f"substitution {a}->{b} leaves GM family {family(a)}")
    new = _copy(mid)
    for track in new.tracks:
        for i, msg in enumerate(track):
            if (
                msg.type == "program_change"
                and msg.channel != DRUM_CHANNEL
                and msg.program in mapping
            ):
                track[i] = msg.copy(program=mapping[msg.program])
    return new
