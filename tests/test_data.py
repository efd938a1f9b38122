"""Data pipeline: MIDI split, fluidsynth rendering, MUSDB18-HQ layout, excerpt sampling.

Real components throughout: mido files built here, the fluidsynth binary and the FluidR3 GM
SoundFont (Debian fluidsynth, fluid-soundfont-gm), wav files written with soundfile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from conftest import skip_unless_installed

from rtsep.models.data import midi_split
from rtsep.models.data.excerpts import ExcerptSampler, load_song
from rtsep.models.data.musdb import DataLayoutError, common_stems, load_tracks
from rtsep.models.data.render import (
    DEFAULT_SOUNDFONT,
    VALID_SONGS,
    RenderError,
    add_render_arguments,
    render_dataset,
    run_render,
)

STEMS = ("drums", "bass", "other")
MUSDB = ("drums", "bass", "other", "vocals")
TPB = 480

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.is_file(),
    reason="needs the Debian packages fluidsynth and fluid-soundfont-gm",
)


# ---------------------------------------------------------------------------------------------
# tiny MIDI files


def _track(channel: int, program: int | None, notes: list[tuple[int, float, float]]):
    """A track of (pitch, start beat, length beats) notes on one channel."""
    events = []
    for pitch, start, dur in notes:
        on = mido.Message("note_on", channel=channel, note=pitch, velocity=100)
        off = mido.Message("note_off", channel=channel, note=pitch, velocity=0)
        events.append((round(start * TPB), 1, on))
        events.append((round((start + dur) * TPB), 0, off))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    if program is not None:
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    track.append(mido.Message("control_change", channel=channel, control=7, value=110, time=0))
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def make_song(bass: str = "gm", beats: int = 8, tempo_bpm: float = 240.0) -> mido.MidiFile:
    """Drums on channel 10, a bass line and piano chords. ``bass``: "gm" (GM program 34,
    fingered bass), "piano" (the low line on a piano: no GM bass), "none" (no low line)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    meta.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(meta)
    drums = [(36 if b % 2 == 0 else 38, b, 0.25) for b in range(beats)]
    drums += [(42, b + 0.5, 0.25) for b in range(beats)]
    mid.tracks.append(_track(9, None, drums))
    line = [(28 + (i % 4) * 2, i / 4, 0.2) for i in range(beats * 4)]  # E1..C2, monophonic
    if bass == "gm":
        mid.tracks.append(_track(0, 33, line))
    elif bass == "piano":
        mid.tracks.append(_track(0, 0, [(p + 12, s, d) for p, s, d in line]))
    chords = [(p, b, 1.9) for b in range(0, beats, 2) for p in (60, 64, 67)]
    mid.tracks.append(_track(1, 0, chords))
    return mid


def notes_by_channel(mid: mido.MidiFile) -> dict[int, int]:
    counts: dict[int, int] = {}
    for track in mid.tracks:
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                counts[msg.channel] = counts.get(msg.channel, 0) + 1
    return counts


def messages(mid: mido.MidiFile, kind: str) -> list:
    return [m for track in mid.tracks for m in track if m.type == kind]


# ---------------------------------------------------------------------------------------------
# MIDI split and MIDI-level augmentation


def test_split_drums_bass_other():
    song = make_song("gm")
    stems, info = midi_split.split_midi(song, "tiny")
    assert set(stems) == set(STEMS)
    assert notes_by_channel(stems["drums"]) == {9: 16}
    assert notes_by_channel(stems["bass"]) == {0: 32}
    assert notes_by_channel(stems["other"]) == {1: 12}
    assert info.has_drums and info.has_gm_bass_program
    assert info.bass_source == "gm-program" and info.exclude_stems == ()
    for m in stems.values():  # timing, tempo and programs kept in every stem
        assert m.length == pytest.approx(song.length)
        assert [t.tempo for t in messages(m, "set_tempo")] == [mido.bpm2tempo(240)]
        assert sorted(p.program for p in messages(m, "program_change")) == [0, 33]
        assert len(m.tracks) == len(song.tracks)


def test_no_gm_bass_low_piano_line_is_relabelled(tmp_path):
    path = tmp_path / "nobass.mid"
    make_song("piano").save(str(path))
    info = midi_split.split_file(path, tmp_path / "stems")
    assert not info.has_gm_bass_program
    assert info.bass_source == "relabelled"
    assert info.relabelled == ((2, 0, 0),)  # track 2, channel 1, program 1 (piano)
    assert info.exclude_stems == ()
    bass = mido.MidiFile(str(tmp_path / "stems" / "bass.mid"))
    other = mido.MidiFile(str(tmp_path / "stems" / "other.mid"))
    assert notes_by_channel(bass) == {0: 32}
    assert notes_by_channel(other) == {1: 12}  # the piano chords stay in other
    assert "relabelled" in info.bass_description()


def test_no_bass_line_keeps_other_out_of_training():
    info = midi_split.analyze(make_song("none"), "nolow")
    assert info.bass_source == "none"
    assert info.exclude_stems == ("other",)


def test_bass_patch_playing_a_melody_is_other():
    song = make_song("none")
    song.tracks.append(_track(2, 37, [(72 + b % 3, b, 0.5) for b in range(8)]))  # slap bass
    info = midi_split.analyze(song)
    part = next(p for p in info.parts if p.channel == 2)
    assert part.stem == "other" and info.has_gm_bass_program


def test_no_drums_detected():
    song = make_song("gm")
    del song.tracks[1]
    stems, info = midi_split.split_midi(song)
    assert not info.has_drums
    assert midi_split.count_notes(stems["drums"]) == 0


def test_transpose_skips_drums():
    song = make_song("gm")
    up = midi_split.transpose(song, 3)
    before = [m.note for m in messages(song, "note_on") if m.velocity]
    after = [m.note for m in messages(up, "note_on") if m.velocity]
    chans = [m.channel for m in messages(song, "note_on") if m.velocity]
    for b, a, c in zip(before, after, chans):
        assert a == (b if c == 9 else b + 3)
    assert midi_split.transpose(song, -200).length == pytest.approx(song.length)  # folds


def test_tempo_scale_changes_duration():
    song = make_song("gm")
    fast = midi_split.scale_tempo(song, 1.25)
    assert fast.length == pytest.approx(song.length / 1.25, rel=1e-3)
    no_tempo = mido.MidiFile(type=1, ticks_per_beat=TPB)
    no_tempo.tracks.append(_track(0, 0, [(60, 0, 4)]))  # default 120 bpm: 2 s
    assert midi_split.scale_tempo(no_tempo, 0.8).length == pytest.approx(2.5, rel=1e-3)


def test_instrument_substitution_stays_in_family():
    rng = random.Random(0)
    progs = set(range(128))
    mapping = midi_split.random_substitution(progs, rng, probability=1.0)
    assert mapping and all(a // 8 == b // 8 and a != b for a, b in mapping.items())
    assert all(a < 96 for a in mapping)  # effects, ethnic, percussive: untouched
    song = make_song("gm")
    sub = midi_split.substitute_programs(song, {33: 35, 0: 4})
    assert sorted(p.program for p in messages(sub, "program_change")) == [4, 35]
    with pytest.raises(ValueError):
        midi_split.substitute_programs(song, {33: 0})


# ---------------------------------------------------------------------------------------------
# rendering with fluidsynth


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    skip_unless_installed(shutil.which("fluidsynth") is not None
                          and DEFAULT_SOUNDFONT.is_file(),
                          "needs the Debian packages fluidsynth and fluid-soundfont-gm")
    base = tmp_path_factory.mktemp("render")
    midi_dir = base / "midi"
    midi_dir.mkdir()
    make_song("gm").save(str(midi_dir / "alpha.mid"))  # 8 beats at 240 bpm: 2 s
    make_song("piano").save(str(midi_dir / "beta.mid"))
    make_song("none").save(str(midi_dir / "gamma.mid"))
    out = base / "out"
    logs: list[str] = []
    manifest = render_dataset(
        out, midi_dir, augment=1, jobs=2, seed=3, valid=["beta"], progress=False, log=logs.append
    )
    return out, midi_dir, manifest, logs


@needs_fluidsynth
def test_render_layout_and_manifest(rendered):
    out, _, manifest, _ = rendered
    expect = {
        "train": {"alpha", "alpha@aug1", "gamma", "gamma@aug1"},
        "valid": {"beta"},
    }
    for subset, names in expect.items():
        assert {p.name for p in (out / subset).iterdir()} == names
        for name in names:
            files = sorted(p.name for p in (out / subset / name).iterdir())
            assert files == ["bass.wav", "drums.wav", "mixture.wav", "other.wav"]
    assert set(manifest["songs"]) == expect["train"] | expect["valid"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["songs"] == manifest["songs"]
    assert manifest["songs"]["gamma"]["exclude_stems"] == ["other"]
    assert manifest["songs"]["beta"]["bass_source"] == "relabelled"
    aug = manifest["songs"]["alpha@aug1"]["params"]
    assert aug["transpose"] in (-3, -2, -1, 1, 2, 3) and 0.9 <= aug["tempo"] <= 1.1


@needs_fluidsynth
def test_render_audio_equal_lengths_and_exact_mixture(rendered):
    out, *_ = rendered
    for folder in [*(out / "train").iterdir(), *(out / "valid").iterdir()]:
        audio = {}
        for name in ("mixture", *STEMS):
            info = sf.info(str(folder / f"{name}.wav"))
            assert (info.samplerate, info.channels) == (44100, 2)
            audio[name], _ = sf.read(str(folder / f"{name}.wav"), dtype="float32")
        assert len({len(a) for a in audio.values()}) == 1
        assert 1.5 * 44100 < len(audio["mixture"]) < 10 * 44100
        assert np.array_equal(audio["mixture"], audio["drums"] + audio["bass"] + audio["other"])
        assert np.abs(audio["mixture"]).max() <= 0.91
        for stem in ("drums", "other"):
            assert np.abs(audio[stem]).max() > 0.01, (folder.name, stem)
    silent_bass, _ = sf.read(str(out / "train" / "gamma" / "bass.wav"))
    assert not silent_bass.any()


@needs_fluidsynth
def test_render_resumes(rendered):
    out, midi_dir, manifest, _ = rendered
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.wav")}
    victim = out / "train" / "alpha@aug1"
    shutil.rmtree(victim)
    logs: list[str] = []
    again = render_dataset(
        out, midi_dir, augment=1, jobs=2, seed=3, valid=["beta"], progress=False, log=logs.append
    )
    assert "rendering 1 of 5" in logs[0]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.wav") if victim not in p.parents} == {
        p: t for p, t in stamp.items() if victim not in p.parents
    }
    assert again["songs"]["alpha@aug1"]["params"] == manifest["songs"]["alpha@aug1"]["params"]
    assert not list(out.glob("*/.tmp-*"))


@needs_fluidsynth
def test_missing_soundfont_and_fluidsynth_errors(tmp_path, capsys, monkeypatch, rendered):
    _, midi_dir, _, _ = rendered
    with pytest.raises(RenderError, match="install the Debian package fluid-soundfont-gm"):
        render_dataset(tmp_path / "o", midi_dir, soundfonts=[tmp_path / "nope.sf2"])
    parser = argparse.ArgumentParser()
    add_render_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path / "o"), "--midi", str(midi_dir), "--soundfont", "/no/such.sf2"]
    )
    assert run_render(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fluid-soundfont-gm" in err
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match="fluidsynth not found: install the Debian package"):
        render_dataset(tmp_path / "o", midi_dir)


def test_render_arguments_defaults_and_split():
    parser = argparse.ArgumentParser()
    add_render_arguments(parser)
    args = parser.parse_args(["--out", "x"])
    assert (args.augment, args.jobs, args.soundfont) == (2, 2, None)
    assert len(VALID_SONGS) == 6 and len(set(VALID_SONGS)) == 6


# ---------------------------------------------------------------------------------------------
# MUSDB18-HQ layout and excerpt sampling


def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, 44100, subtype="FLOAT")


def make_fake_musdb(root: Path, seconds: float = 1.0) -> None:
    rng = np.random.default_rng(0)
    n = int(44100 * seconds)
    for subset, names in (("train", ["Artist A - One", "Artist B - Two"]), ("test", ["C - Three"])):
        for name in names:
            stems = {s: rng.uniform(-0.2, 0.2, (n, 2)) for s in MUSDB}
            for s, a in stems.items():
                _write(root / subset / name / f"{s}.wav", a)
            _write(root / subset / name / "mixture.wav", sum(stems.values()))


def test_fake_musdb_loads(tmp_path):
    make_fake_musdb(tmp_path)
    train = load_tracks(tmp_path, "train")
    assert [t.name for t in train] == ["Artist A - One", "Artist B - Two"]
    assert train[0].stems == ("drums", "bass", "other", "vocals")
    assert common_stems(train) == ("drums", "bass", "other", "vocals")
    assert [t.name for t in load_tracks(tmp_path, "test")] == ["C - Three"]
    mix, stems = load_song(train[0], ("drums", "bass", "other", "vocals"))
    assert mix.shape == (44100, 2) and stems.shape == (4, 44100, 2)
    assert mix.dtype == np.float32 and stems.dtype == np.float32
    np.testing.assert_allclose(mix, stems.sum(axis=0), atol=1e-6)
    os.remove(train[1].paths["bass"])
    with pytest.raises(DataLayoutError, match="bass.wav"):
        load_song(load_tracks(tmp_path, "train")[1], ("drums", "bass"))


def test_wrong_layout_errors_name_what_was_expected(tmp_path):
    make_fake_musdb(tmp_path)
    with pytest.raises(DataLayoutError, match=r"no valid/ folder.*found test/, train/"):
        load_tracks(tmp_path, "valid")
    with pytest.raises(DataLayoutError, match="not found"):
        load_tracks(tmp_path / "missing", "train")
    flat = tmp_path / "flat"
    _write(flat / "train" / "song.wav", np.zeros((100, 2)))
    with pytest.raises(DataLayoutError, match="no track folders"):
        load_tracks(flat, "train")


def make_rendered_like(root: Path) -> None:
    """Rendered-data layout with a manifest; song 'bad' has its 'other' excluded and that
    file holds a constant marker value, song 'quiet' has silent drums."""
    n = 44100
    rng = np.random.default_rng(1)
    songs = {}
    for name in ("good", "bad", "quiet"):
        stems = {s: rng.uniform(-0.3, 0.3, (n, 2)).astype(np.float32) for s in STEMS}
        if name == "bad":
            stems["other"][:] = 0.7
        if name == "quiet":
            stems["drums"][:] = 0.0
        for s, a in stems.items():
            _write(root / "train" / name / f"{s}.wav", a)
        _write(root / "train" / name / "mixture.wav", sum(stems.values()))
        songs[name] = {"split": "train", "exclude_stems": ["other"] if name == "bad" else []}
    manifest = {"format": "rtsep-rendered-v1", "subsets": {"train": list(songs)}, "songs": songs}
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "valid").mkdir()


def test_excerpt_sampler_shapes_mix_is_sum_and_exclusions(tmp_path):
    make_rendered_like(tmp_path)
    tracks = load_tracks(tmp_path, "train")
    assert {t.name: t.exclude_stems for t in tracks}["bad"] == ("other",)
    sampler = ExcerptSampler(tracks, STEMS, 4096, seed=0, remix_probability=0.5)
    mix, stems = sampler.sample(64)
    assert mix.shape == (64, 4096) and stems.shape == (64, 3, 4096)
    assert mix.dtype == np.float32 and stems.dtype == np.float32
    assert np.array_equal(mix, stems.sum(axis=1))
    # the excluded constant 'other' (0.7 times a gain of 0.5..1.5) never shows up
    other = stems[:, 2]
    assert not np.any(np.all(np.abs(other - other[:, :1]) < 1e-6, axis=1))
    # per-stem gains stay in range: |x| <= 0.3 * 1.5
    assert np.abs(stems).max() <= 0.3 * 1.5 + 1e-6
    # silent drum excerpts are drawn again (keep_silent=0): none stay silent
    strict = ExcerptSampler(tracks, STEMS, 2048, seed=1, keep_silent=0.0, max_tries=20)
    _, s2 = strict.sample(32)
    assert np.sqrt(np.mean(s2[:, 0] ** 2, axis=-1)).min() > 1e-3
    # deterministic by seed
    again = ExcerptSampler(tracks, STEMS, 4096, seed=0, remix_probability=0.5)
    assert np.array_equal(again.sample(64)[1], stems)
    mid = ExcerptSampler(tracks, STEMS, 1000, seed=2, channel="mid")
    assert mid.sample(2)[0].shape == (2, 1000)
    # gain_db: gains log-uniform within +-20 dB of the song's level (uniform +-0.3 noise:
    # RMS 0.3 / sqrt(3)), spread over most of that range
    wide = ExcerptSampler(tracks, STEMS, 4096, seed=3, gain_db=20.0, keep_silent=0.0)
    mix, stems = wide.sample(64)
    assert np.array_equal(mix, stems.sum(axis=1))
    rms = np.sqrt(np.mean(stems[:, :2].astype(np.float64) ** 2, axis=-1))  # drums, bass
    db = 20 * np.log10(rms[rms > 1e-3] / (0.3 / np.sqrt(3)))
    assert db.min() >= -20.5 and db.max() <= 20.5 and db.max() - db.min() > 30


def test_excerpt_longer_than_song_is_zero_padded(tmp_path):
    make_fake_musdb(tmp_path, seconds=0.1)
    tracks = load_tracks(tmp_path, "train")
    sampler = ExcerptSampler(tracks, ("drums", "vocals"), 8000, seed=0, keep_silent=1.0)
    mix, stems = sampler.sample(4)
    assert stems.shape == (4, 2, 8000)
    assert not stems[:, :, 4410:].any() and stems[:, :, :4410].any()
    assert np.array_equal(mix, stems.sum(axis=1))


# ---------------------------------------------------------------------------------------------
# generated songs (rtsep data compose)


def test_composed_songs_are_seeded_and_split_into_all_three_stems(tmp_path):
    from rtsep.models.data.compose import DRUM_STYLES, compose, to_midi, write_songs

    for style, (steps, beats, template) in DRUM_STYLES.items():
        assert all(len(row) == steps * beats for row in template.values()), style
    paths = write_songs(tmp_path / "a", 12, seed=4)
    again = write_songs(tmp_path / "b", 12, seed=4)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    other_seed = write_songs(tmp_path / "c", 1, seed=5)[0]
    assert other_seed.read_bytes() != paths[0].read_bytes()
    styles, programs, thinned, drum_volumes = set(), set(), 0, []
    for i, path in enumerate(paths):
        song = compose(4, i)
        mid = mido.MidiFile(str(path))
        assert 30 < mid.length < 130, (path.name, mid.length)
        info = midi_split.analyze(mid, path.stem)
        # The bass part is a GM bass program low enough for rule 2: no relabelling needed,
        # nothing kept out of training; drums are there exactly when the song has them.
        assert info.bass_source == "gm-program" and info.exclude_stems == ()
        assert info.has_drums == any(p.role == "drums" for p in song.parts)
        stems = {p.stem for p in info.parts}
        assert stems >= {"bass", "other"}
        assert all(p.median_pitch <= midi_split.BASS_PROGRAM_MAX_MEDIAN
                   for p in info.parts if p.stem == "bass")
        roles = {p.role for p in song.parts}
        thinned += any(sec.parts != roles for sec in song.sections)
        styles.add(song.style)
        programs |= {p.program for p in song.parts if p.role not in ("drums", "bass")}
        drum_volumes += [p.volume for p in song.parts if p.role == "drums"]
        assert len(to_midi(song).tracks) == 1 + len(song.parts)
        for track in mid.tracks:  # a pitch is never struck again before its note-off
            sounding: set[tuple[int, int]] = set()
            for msg in track:
                key = (getattr(msg, "channel", -1), getattr(msg, "note", -1))
                if msg.type == "note_on" and msg.velocity > 0:
                    assert key not in sounding, (path.name, key)
                    sounding.add(key)
                elif msg.type in ("note_on", "note_off"):
                    sounding.discard(key)
    assert len(styles) >= 5 and len(programs) >= 10
    assert thinned >= 6  # parts drop out in some section (intros, breakdowns) in most songs
    # The drum balance varies widely (the synthesizer's CC7 gain is 40 log10(v / 127) dB).
    drum_volumes += [p.volume for i in range(12, 40) for p in compose(4, i).parts
                     if p.role == "drums"]
    assert 40 * np.log10(max(drum_volumes) / min(drum_volumes)) >= 14


def test_shared_register_parts_are_other_in_the_bass_octaves_and_leave_the_rest_alone():
    """Some songs get a non-bass part down in the bass's register (labelled other by its
    program) and some of those a higher bass; with shared_register=0 no song has one, and a
    song without one is the same song either way."""
    from rtsep.models.data.compose import compose, to_midi

    low_medians, bass_medians, shared = [], [], 0
    for i in range(30):
        plain, song = compose(6, i, shared_register=0.0), compose(6, i)
        assert all(p.role != "low" for p in plain.parts)
        low = [p for p in song.parts if p.role == "low"]
        if not low:
            assert to_midi(song).tracks == to_midi(plain).tracks
            continue
        shared += 1
        info = midi_split.analyze(to_midi(song), song.name)
        assert info.bass_source == "gm-program"
        by_channel = {p.channel: p for p in info.parts}
        assert by_channel[low[0].channel].stem == "other"
        assert low[0].program not in midi_split.BASS_PROGRAMS
        low_medians.append(by_channel[low[0].channel].median_pitch)
        bass_medians += [p.median_pitch for p in info.parts if p.stem == "bass"]
    assert 8 <= shared <= 22
    assert max(low_medians) <= 60 and min(low_medians) <= 48
    assert max(bass_medians) > 48 >= min(bass_medians)  # some basses moved up an octave
    assert min(low_medians) < max(bass_medians)  # the two stems share a register


def test_composed_drums_keep_time_mostly_on_the_closed_hi_hat():
    """The drum palette of 40 songs: the closed hi-hat is the commonest sound (as in the
    openmsx songs), shakers stay rare, both GM kicks appear."""
    from collections import Counter

    from rtsep.models.data.compose import compose

    hits: Counter[int] = Counter()
    for i in range(40):
        for part in compose(7, i).parts:
            if part.role == "drums":
                hits.update(n.pitch for n in part.notes)
    total = sum(hits.values())
    assert hits.most_common(1)[0][0] == 42
    assert hits[70] / total < 0.06 and hits[35] > 0 and hits[36] > 0


def test_rotated_soundfonts_cycle_over_training_originals(tmp_path):
    from rtsep.models.data.compose import write_songs
    from rtsep.models.data.render import plan_jobs

    write_songs(tmp_path, 5, seed=0)
    fonts = [tmp_path / "a.sf2", tmp_path / "b.sf2"]
    jobs = plan_jobs(tmp_path, fonts, augment=0, seed=0, valid=["gen0_0002"],
                     rotate_fonts=True)
    used = {j.name: Path(j.soundfont).name for j in jobs}
    assert used == {"gen0_0000": "a.sf2", "gen0_0001": "b.sf2", "gen0_0002": "a.sf2",
                    "gen0_0003": "a.sf2", "gen0_0004": "b.sf2"}
    plain = plan_jobs(tmp_path, fonts, augment=0, seed=0, valid=["gen0_0002"])
    assert {Path(j.soundfont).name for j in plain} == {"a.sf2"}


@needs_fluidsynth
def test_composed_song_renders_with_every_stem_audible(tmp_path, capsys):
    from rtsep.cli import main
    from rtsep.models.data.compose import compose

    assert main(["data", "compose", "--out", str(tmp_path / "midi"), "--songs", "2",
                 "--seed", "3"]) == 0
    assert main(["data", "render", "--midi", str(tmp_path / "midi"), "--out",
                 str(tmp_path / "out"), "--augment", "0", "--valid", "gen3_0001",
                 "--rotate-soundfonts", "--no-progress"]) == 0
    folder = tmp_path / "out" / "train" / "gen3_0000"
    audio = {s: sf.read(folder / f"{s}.wav", dtype="float32")[0] for s in (*STEMS, "mixture")}
    assert np.array_equal(audio["mixture"], audio["drums"] + audio["bass"] + audio["other"])
    roles = {p.role for p in compose(3, 0).parts}
    for stem in STEMS:
        rms = float(np.sqrt(np.mean(np.square(audio[stem]))))
        assert (rms > 1e-3) == (stem in roles or stem == "other"), (stem, rms)
    assert main(["data", "compose", "--out", str(tmp_path / "x"), "--songs", "0"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")


def test_stem_levels_are_energy_over_the_mixture(tmp_path, capsys):
    from rtsep.models.data.levels import main, stem_levels

    make_rendered_like(tmp_path)  # songs good, bad, quiet: independent +-0.3 noise stems
    levels = stem_levels(tmp_path, seconds=1.0)
    # 'good': three equal stems, each a third of the energy; 'quiet': silent drums (left out),
    # so bass and other are half each
    assert np.allclose([levels[s][0] for s in STEMS], 10 * np.log10(1 / 3), atol=0.2)
    assert len(levels["drums"]) == 2
    assert np.allclose([levels["bass"][-1], levels["other"][-1]], 10 * np.log10(1 / 2),
                       atol=0.2)
    assert len(stem_levels(tmp_path, seconds=1.0, max_songs=1)["bass"]) == 1
    assert main([str(tmp_path), "--seconds", "1"]) == 0
    line = capsys.readouterr().out  # medians over the songs that have each stem
    assert "(3 songs)" in line
    for stem in STEMS:
        assert f"{stem} {np.median(levels[stem]):+.1f} dB" in line


def _wad(lumps: list[tuple[str, bytes]], kind: bytes = b"PWAD") -> bytes:
    """A WAD file: header, the lumps' data, then the directory (as Doom's tools lay it out)."""
    import struct

    data, entries, offset = b"", [], 12
    for name, blob in lumps:
        entries.append(struct.pack("<ii8s", offset, len(blob), name.encode()))
        data += blob
        offset += len(blob)
    return struct.pack("<4sii", kind, len(lumps), offset) + data + b"".join(entries)


def _midi_bytes(song: mido.MidiFile, path: Path) -> bytes:
    song.save(path)
    return path.read_bytes()


def test_wad_music_extracts_distinct_midi_lumps_and_splits_them(tmp_path, capsys):
    from rtsep.cli import main

    song = _midi_bytes(make_song(), tmp_path / "a.mid")
    other = _midi_bytes(make_song(bass="none", beats=12), tmp_path / "b.mid")
    wad = tmp_path / "music.wad"
    wad.write_bytes(_wad([("PLAYPAL", bytes(768)), ("D_E1M1", song), ("D_E1M2", other),
                          ("D_E2M1", song), ("D_MUSOLD", b"MUS\x1a" + bytes(12)),
                          ("MAP01", b"")]))
    before = wad.read_bytes()
    out = tmp_path / "midi"
    assert main(["data", "wad-music", "--wad", str(wad), "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["music_d_e1m1.mid", "music_d_e1m2.mid"]  # D_E2M1 repeats D_E1M1
    assert (out / "music_d_e1m1.mid").read_bytes() == song
    assert (out / "music_d_e1m2.mid").read_bytes() == other
    assert wad.read_bytes() == before
    assert "wrote 2 MIDI songs" in capsys.readouterr().out
    # A second run finds the same songs and writes nothing new; the MUS lump is reported.
    assert main(["data", "wad-music", "--wad", str(wad), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == files
    assert "skipped 1 MUS" in capsys.readouterr().out
    # The extracted songs are ordinary General MIDI files for the stem split.
    info = midi_split.analyze(midi_split.load_midi(out / "music_d_e1m1.mid"))
    assert info.has_drums and info.bass_source == "gm-program"


@pytest.mark.parametrize(
    "blob, message",
    [(b"", "not a WAD file"), (b"RIFF" + bytes(20), "not a WAD file"),
     (None, "truncated"), (b"PWAD" + bytes(8) + b"x", "no MIDI music lumps")],
)
def test_wad_music_broken_files_fail_with_one_line(tmp_path, capsys, blob, message):
    from rtsep.cli import main

    if blob is None:  # a directory that claims a lump past the end of the file
        blob = _wad([("D_RUNNIN", b"MThd" + bytes(10))])[:-10]
    wad = tmp_path / "broken.wad"
    wad.write_bytes(blob)
    assert main(["data", "wad-music", "--wad", str(wad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert main(["data", "wad-music", "--wad", str(tmp_path / "missing.wad"), "--out",
                 str(tmp_path / "o")]) == 1
    assert "cannot read" in capsys.readouterr().err
