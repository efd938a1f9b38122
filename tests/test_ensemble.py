"""Ensembles (rtsep/ensemble.py): the weighted average of their members' stems, aligned to the
slowest member's latency, streamed without allocating; found by name like a model; broken
cards are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import build_and_convert, music, rtsep_growth

from rtsep.engine import Separator, load
from rtsep.ensemble import Ensemble
from rtsep.errors import ModelError


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models of stems (a, b) whose stems add up to the input, with different latencies:
    a U-Net at hop 32 (159 samples) and a spec model at hop 64 (383 samples)."""
    d = tmp_path_factory.mktemp("ensemble")
    build_and_convert(d, "unet", residual_last=True, seed=1)
    build_and_convert(d, "spec", variant="spec", out_frames=2)
    return d


def write_ensemble(folder: Path, name: str, **fields: object) -> Path:
    card = {"format": "rtsep-ensemble/1", "name": name, "kind": "ensemble",
            "members": ["unet", "spec"], **fields}
    path = folder / f"{name}.ensemble.json"
    path.write_text(json.dumps(card))
    return path


def test_ensemble_is_the_aligned_weighted_average(members: Path) -> None:
    """Streamed in awkward blocks, output sample n is the weighted average of the members'
    separations of the whole signal at n - latency; the latency is the slowest member's; the
    stems still add up to the input."""
    path = write_ensemble(members, "pair", weights=[3, 1])
    x = music(0.5, channels=2, seed=5)
    alone = [Separator.load(members / f"{m}.tflite").separate(x) for m in ("unet", "spec")]
    assert np.abs(alone[0] - alone[1]).max() > 1e-2  # the members really differ
    ens = load(path)
    assert isinstance(ens, Ensemble)
    assert ens.latency_samples == 383 == max(m.latency_samples for m in ens.members)
    ens.prepare(44100, 777, 2)
    got = np.concatenate([ens.process(x[i:i + 777]) for i in range(0, len(x), 777)]
                         + [ens.flush()], axis=1)[:, ens.latency_samples:]
    want = 0.75 * alone[0] + 0.25 * alone[1]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(got.sum(0) - x).max() < 1e-4
    np.testing.assert_allclose(ens.separate(x), got, atol=1e-6)


def test_shifted_member_hears_the_input_late(members: Path) -> None:
    """A member with a shift of s samples separates the input delayed by s; its latency grows
    by s (a term of its own), and the ensemble's output is still aligned: the weighted
    average of the model on the signal and on the signal s samples late, at n - latency."""
    path = write_ensemble(members, "shifted", members=["spec", "spec"], shifts=[0, 100])
    x = music(0.5, channels=2, seed=9)
    spec = Separator.load(members / "spec.tflite")
    late = spec.separate(np.concatenate([np.zeros((100, 2), np.float32), x]))[:, 100:]
    unshifted = spec.separate(x)
    assert np.abs(late - unshifted).max() > 1e-3  # the shift changes what the model hears
    ens = load(path)
    assert ens.latency_samples == spec.latency_samples + 100
    assert ens.latency_terms["shift"] == 100
    assert sum(ens.latency_terms.values()) == ens.latency_samples
    ens.prepare(44100, 333, 2)
    got = np.concatenate([ens.process(x[i:i + 333]) for i in range(0, len(x), 333)]
                         + [ens.flush()], axis=1)[:, ens.latency_samples:]
    assert np.abs(got - 0.5 * (unshifted + late)).max() < 1e-5
    assert np.abs(got.sum(0) - x).max() < 1e-4


def test_ensemble_process_into_allocates_nothing(members: Path) -> None:
    block = 512
    x = music(2.0, channels=2, seed=6)
    ens = load(write_ensemble(members, "alloc", shifts=[0, 256])).prepare(44100, block, 2)
    out = np.zeros((2, block, 2), np.float32)
    blocks = [np.ascontiguousarray(x[i:i + block]) for i in range(0, len(x) - block, block)]
    for b in blocks[:3]:  # warm-up
        ens.process_into(b, out)
    tracemalloc.start(32)
    try:
        start = tracemalloc.take_snapshot()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for b in blocks[3:80]:  # past 256 windows: counters no longer cached small ints
            ens.process_into(b, out)
        _, peak = tracemalloc.get_traced_memory()
        few = tracemalloc.take_snapshot()
        for b in blocks[80:]:
            ens.process_into(b, out)
        end = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # Nothing grows with the number of blocks (what stays is the sample counters' new int
    # objects, a few per member), and the transient peak (views, argument boxing) stays far
    # below one member's block of output (2 stems x 512 x 2 channels x 4 bytes = 8 KiB).
    # Retained memory counts rtsep's code only: other threads of the test process (tqdm's
    # monitor) allocate at times of their own (64 bytes once in a full run).
    assert len(blocks) > 160
    # A leak of one small object per block grows by 80 x 28 bytes or more over the last 80
    # blocks (a 16-byte bytes object per block: 5260); a few sample counters replaced by
    # larger ints do not grow with blocks (144 bytes at engine.py's counters in a full run).
    (grown, where), (retained, _) = rtsep_growth(end, few), rtsep_growth(few, start)
    assert grown <= 512, f"grew by {grown} bytes over 80 blocks at {where}"
    assert retained <= 256, f"retained {retained} bytes"
    assert peak - base < 4096, f"transient peak {peak - base} bytes"


@pytest.mark.parametrize("fields,message", [
    ({"members": ["unet"]}, "at least two model names"),
    ({"weights": [1, -1]}, "2 positive numbers"),
    ({"weights": [1]}, "2 positive numbers"),
    ({"shifts": [0, -1]}, "shifts should be 2 whole numbers of samples >= 0"),
    ({"shifts": [0.5, 0]}, "shifts should be 2"),
    ({"members": ["unet", "nosuch"]}, "unknown model 'nosuch'"),
    ({"format": "rtsep-model/1"}, "not an ensemble card"),
    ({"member_sha256": ["0" * 64, "0" * 64]}, "unet, spec changed since the ensemble was"),
])
def test_broken_cards_are_one_line_errors(members: Path, fields: dict, message: str) -> None:
    path = write_ensemble(members, "broken", **fields)
    with pytest.raises(ModelError, match=message):
        load(path)


def test_members_must_share_stems(members: Path, tmp_path: Path) -> None:
    build_and_convert(tmp_path, "unet", stems=("a", "c"))
    build_and_convert(tmp_path, "spec", variant="spec", out_frames=2)
    with pytest.raises(ModelError, match="members must share stems"):
        load(write_ensemble(tmp_path, "mixed"))


def test_rtsep_file_separates_with_an_ensemble(members: Path, tmp_path: Path) -> None:
    """The CLI takes an ensemble card as a model and writes its samples."""
    path = write_ensemble(members, "cli")
    x = music(0.4, channels=2, seed=8)
    song = tmp_path / "song.wav"
    sf.write(song, x, 44100, subtype="FLOAT")
    r = subprocess.run([sys.executable, "-m", "rtsep", "file", str(song), "-m", str(path),
                        "-o", str(tmp_path / "out"), "--subtype", "FLOAT", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = load(path).separate(x)
    for i, stem in enumerate(("a", "b")):
        got, rate = sf.read(tmp_path / "out" / "cli" / "song" / f"{stem}.wav", dtype="float32")
        assert rate == 44100
        assert np.abs(got - want[i]).max() < 1e-6


def test_ship_ensemble_measures_and_pins_its_members(tmp_path: Path) -> None:
    """ship_ensemble writes a card whose validation numbers are what `rtsep eval` measures on
    the same data, pins its members' hashes, measures a live block and writes its .md."""
    from test_eval import make_rendered

    from rtsep.evaluate import evaluate
    from rtsep.models.ship_ensemble import main as ship_ensemble

    dest = tmp_path / "shipped"
    build_and_convert(dest, "u1", stems=("drums", "bass"), residual_last=True, seed=1)
    build_and_convert(dest, "s1", stems=("drums", "bass"), variant="spec", out_frames=2)
    data = tmp_path / "data"
    make_rendered(data)
    assert ship_ensemble(["--name", "pair", "--members", "u1,s1", "--data", str(data),
                          "--dest", str(dest), "--live-blocks", "2048",
                          "--live-seconds", "0.5"]) == 0
    card = json.loads((dest / "pair.ensemble.json").read_text())
    assert card["member_sha256"] == [Separator.load(dest / f"{m}.tflite").card.sha256
                                     for m in ("u1", "s1")]
    assert card["live_block"] == 2048 and "late of" in card["live_block_measured"]
    again = evaluate(dest / "pair.ensemble.json", str(data)).to_json()
    assert card["validation"]["sdr_over_floor_db"] == again["sdr_over_floor_db"]
    assert "| `u1` | 0.500 |" in (dest / "pair.md").read_text()


def test_separator_load_refuses_an_ensemble_card(members: Path) -> None:
    """Separator is one model; an ensemble card given to it says where ensembles load."""
    with pytest.raises(ModelError, match="is an ensemble card: load it with rtsep.engine.load"):
        Separator.load(write_ensemble(members, "pair"))
