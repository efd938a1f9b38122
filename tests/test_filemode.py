"""``rtsep file`` as a user runs it: outputs, lengths, rates, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import music

from rtsep.cli import main
from rtsep.engine import Separator


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsep", *args], capture_output=True,
                          text=True, timeout=300)


def one_line_error(stderr: str) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("rtsep:")]
    assert "Traceback" not in stderr
    return lines


@pytest.mark.parametrize("rate,channels,subtype", [(44100, 2, "PCM_16"), (48000, 1, "FLOAT"),
                                                   (22050, 2, "PCM_24")])
def test_outputs_have_input_length_rate_and_channels(tmp_path: Path, tiny_model: Path,
                                                     rate: int, channels: int,
                                                     subtype: str) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, music(0.7, channels, rate), rate, subtype=subtype)
    before = song.read_bytes()
    code = main(["file", str(song), "-m", str(tiny_model), "-o", str(tmp_path / "out"),
                 "--subtype", subtype, "-q"])
    assert code == 0
    assert song.read_bytes() == before  # the input is never modified
    for stem in ("a", "b"):
        info = sf.info(tmp_path / "out" / "tiny" / "song" / f"{stem}.wav")
        assert (info.frames, info.samplerate, info.channels) == (int(0.7 * rate), rate,
                                                                 channels)
        assert info.subtype == subtype
    assert not list((tmp_path / "out").rglob("*.part"))


def test_file_output_equals_engine_output_aligned(tmp_path: Path, tiny_model: Path) -> None:
    """What rtsep file writes is the engine's output shifted back by the latency."""
    x = music(0.5, 2, seed=4)
    song = tmp_path / "s.flac"
    sf.write(song, x, 44100, subtype="PCM_24")
    x = sf.read(song, dtype="float32")[0]
    assert main(["file", str(song), "-m", str(tiny_model), "-o", str(tmp_path), "--format",
                 "flac", "--subtype", "PCM_24", "--stems", "b", "-q"]) == 0
    assert [p.name for p in (tmp_path / "tiny" / "s").iterdir()] == ["b.flac"]
    written = sf.read(tmp_path / "tiny" / "s" / "b.flac", dtype="float32")[0]
    sep = Separator.load(tiny_model).prepare(44100, len(x), 2)
    full = np.concatenate([sep.process(x), sep.flush()], axis=1)[1, sep.latency_samples:]
    assert np.abs(written - full).max() < 2.0 ** -22  # PCM_24 rounding


def test_example_stems_sum_to_identity_model_input(tmp_path: Path,
                                                   identity_model: Path) -> None:
    x = music(0.3, 2, seed=5)
    song = tmp_path / "id.wav"
    sf.write(song, x, 44100, subtype="FLOAT")
    assert main(["file", str(song), "-m", str(identity_model), "-o", str(tmp_path),
                 "--subtype", "FLOAT", "-q"]) == 0
    y = sf.read(tmp_path / "identity" / "id" / "all.wav", dtype="float32")[0]
    np.testing.assert_allclose(y, x, atol=2e-6)


def make_bad_inputs(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected error text)."""
    bad = {}
    bad["missing"] = (d / "missing.wav", "file not found")
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio")
    bad["corrupt"] = (corrupt, "cannot read audio")
    text = d / "notes.flac"
    text.write_text("these are not audio samples\n")
    bad["text"] = (text, "cannot read audio")
    empty = d / "empty.wav"
    sf.write(empty, np.zeros((0, 2), np.float32), 44100)
    bad["empty"] = (empty, "contains no audio")
    nan = d / "nan.wav"
    x = music(0.2, 2)
    x[5000, 1] = np.nan
    sf.write(nan, x, 44100, subtype="FLOAT")
    bad["nan"] = (nan, "NaN or Inf sample at frame 5000")
    inf = d / "inf.wav"
    x = music(0.2, 1)
    x[70000 % len(x), 0] = np.inf
    sf.write(inf, x, 44100, subtype="FLOAT")
    bad["inf"] = (inf, "NaN or Inf sample at frame")
    many = d / "many.wav"
    sf.write(many, np.zeros((1000, 9), np.float32), 44100)
    bad["channels"] = (many, "9 channels; at most 8 are supported")
    folder = d / "folder.wav"
    folder.mkdir()
    bad["folder"] = (folder, "is a folder")
    return bad


def test_bad_inputs_fail_alone_with_one_line_and_leave_nothing(tmp_path: Path,
                                                               tiny_model: Path) -> None:
    bad = make_bad_inputs(tmp_path)
    good = tmp_path / "good.wav"
    sf.write(good, music(0.3, 2), 44100)
    args = [str(p) for p, _ in bad.values()] + [str(good)]
    res = run_cli("file", *args, "-m", str(tiny_model), "-o", str(tmp_path / "out"), "-q")
    assert res.returncode == 1
    errors = one_line_error(res.stderr)
    for name, (path, text) in bad.items():
        hits = [e for e in errors if str(path) in e]
        assert len(hits) == 1 and text in hits[0], (name, errors)
    assert f"{len(bad)} of {len(bad) + 1} file(s) failed" in res.stderr
    out = tmp_path / "out" / "tiny"
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # no partial song folders...
    assert not list(out.rglob("*.part"))  # ...and no temporary files


def test_failure_midway_leaves_no_partial_output(tmp_path: Path, tiny_model: Path) -> None:
    """A NaN deep into a file fails after some stems were written: all are removed."""
    x = music(3.0, 2)
    x[-100, 0] = np.nan  # after the first 65536-frame block was separated and written
    song = tmp_path / "late.wav"
    sf.write(song, x, 44100, subtype="FLOAT")
    assert main(["file", str(song), "-m", str(tiny_model), "-o", str(tmp_path / "o"),
                 "-q"]) == 1
    assert not [p for p in (tmp_path / "o").rglob("*") if p.is_file()]


def test_unwritable_output_folder(tmp_path: Path, tiny_model: Path) -> None:
    song = tmp_path / "s.wav"
    sf.write(song, music(0.2, 1), 44100)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    res = run_cli("file", str(song), "-m", str(tiny_model), "-o", str(blocker), "-q")
    assert res.returncode == 1
    (line,) = one_line_error(res.stderr)[:1]
    assert "cannot write output" in line


def test_model_errors(tmp_path: Path, tiny_model: Path) -> None:
    song = tmp_path / "s.wav"
    sf.write(song, music(0.2, 1), 44100)
    broken = tmp_path / "broken.tflite"
    shutil.copy(tiny_model, broken)
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    data = bytearray(broken.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    broken.with_suffix(".json").write_text(json.dumps(card))
    cases = {
        "sha256 mismatch: expected": ["-m", str(broken)],
        "unknown model 'nope'": ["-m", "nope"],
        "model file not found": ["-m", str(tmp_path / "absent.tflite")],
        "unknown stem(s) drums: this model has a, b": ["-m", str(tiny_model), "--stems",
                                                       "drums"],
    }
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(os.urandom(3000))
    card_g = dict(card, sha256=__import__("hashlib").sha256(garbage.read_bytes()).hexdigest())
    garbage.with_suffix(".json").write_text(json.dumps(card_g))
    cases["not a valid TFLite model"] = ["-m", str(garbage)]
    nocard = tmp_path / "nocard.tflite"
    shutil.copy(tiny_model, nocard)
    cases["model card nocard.json not found"] = ["-m", str(nocard)]
    badcard = tmp_path / "badcard.tflite"
    shutil.copy(tiny_model, badcard)
    badcard.with_suffix(".json").write_text(json.dumps(dict(card, hop=48)))
    cases["hop should divide 64, found 48"] = ["-m", str(badcard)]
    slow = tmp_path / "slow.tflite"
    shutil.copy(tiny_model, slow)
    slow.with_suffix(".json").write_text(json.dumps(dict(card, live_block="fast")))
    cases["live_block should be a positive integer, found 'fast'"] = ["-m", str(slow)]
    liar = tmp_path / "liar.tflite"
    shutil.copy(tiny_model, liar)
    liar.with_suffix(".json").write_text(json.dumps(dict(card, stems=["x", "y", "z"])))
    cases["the card says stems is"] = ["-m", str(liar)]
    for text, extra in cases.items():
        res = run_cli("file", str(song), "-o", str(tmp_path / "o"), "-q", *extra)
        assert res.returncode == 1, text
        lines = one_line_error(res.stderr)
        assert len(lines) == 1 and text in lines[0], (text, res.stderr)
    assert not (tmp_path / "o").exists()  # refused before any audio was touched
