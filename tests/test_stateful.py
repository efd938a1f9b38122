"""The stateful kind (causal TCN, causal streaming U-Net): streamed invokes equal the
full-sequence model, in Keras, in TFLite and through the engine; its card is checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CUNET, TINY_TCN, build_and_convert, music

from rtsep.engine import Separator
from rtsep.errors import ModelError
from rtsep.framing import frame_signal, overlap_add
from rtsep.modelcard import read_card, write_card


def _streamed(twin: object, full: object, x: np.ndarray, state_size: int) -> np.ndarray:
    """x [batch, T, 64] through the streaming twin (``full``'s weights) block by block, from a
    zero state: the stems of every block, concatenated."""
    twin.set_weights(full.get_weights())
    f = twin.inputs[0].shape[1]
    state = np.zeros((len(x), state_size), np.float32)
    got = []
    for k in range(0, x.shape[1], f):
        out = twin([x[:, k:k + f], state])
        got.append(np.asarray(out["stems"]))
        state = np.asarray(out["next_state"])
    return np.concatenate(got, 1)


def test_streaming_twin_equals_full_sequence_in_keras() -> None:
    import keras

    from rtsep.models.tcn import build_tcn, receptive_field, state_size

    keras.utils.set_random_seed(3)
    full = build_tcn(stems=3, **TINY_TCN)
    assert receptive_field(TINY_TCN) == 15
    assert state_size(TINY_TCN) == 2 * (1 + 2 + 4) * TINY_TCN["hidden"]
    x = np.random.default_rng(0).normal(0, 0.3, (2, 60, 64)).astype(np.float32)
    ref = np.asarray(full(x))
    for f in (1, 3, 20):  # any chunking gives the same frames
        twin = build_tcn(stems=3, stream_frames=f, **TINY_TCN)
        got = _streamed(twin, full, x, state_size(TINY_TCN))
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_causal_output_ignores_the_future() -> None:
    import keras

    from rtsep.models.tcn import build_tcn

    keras.utils.set_random_seed(4)
    model = build_tcn(stems=2, **TINY_TCN)
    x = np.random.default_rng(1).normal(0, 0.3, (1, 40, 64)).astype(np.float32)
    y = x.copy()
    y[:, 30:] = 0.0  # change only frames 30..39
    a, b = np.asarray(model(x)), np.asarray(model(y))
    assert np.abs(a[:, :30] - b[:, :30]).max() == 0.0
    assert np.abs(a[:, 30:] - b[:, 30:]).max() > 0.0


def test_card_and_parity(tiny_tcn: tuple[Path, object]) -> None:
    from rtsep.convert.cli import example_audio
    from rtsep.convert.parity import check

    path, model = tiny_tcn
    card = read_card(path)
    assert card.stateful and card.context_frames == card.out_frames == 4
    assert card.state_size == 2 * (1 + 2 + 4) * TINY_TCN["hidden"]
    assert card.raw["state"]["receptive_field_frames"] == 15
    report = check(model, path, example_audio(), "none")
    assert report.ok, report.line()


@pytest.mark.parametrize("which, latency", [("tiny_tcn", 63 + 3 * 32),
                                            ("tiny_tcn_lookahead", 63 + 2 * 32 + 2 * 32),
                                            ("tiny_cunet", 63 + 3 * 32)])
def test_engine_equals_the_full_sequence_model(which: str, latency: int,
                                               request: pytest.FixtureRequest) -> None:
    """The definition, independent of the engine: frame each channel, run the Keras model on
    the whole sequence at once (output step t is frame t - lookahead), overlap-add, delay by
    the latency."""
    path, model = request.getfixturevalue(which)
    la = read_card(path).lookahead_frames
    x = music(0.2, channels=2, seed=5)
    sep = Separator.load(path).prepare(44100, 100, 2)
    got = sep.process(x)
    assert sep.latency_samples == latency
    ref = np.zeros_like(got)
    for ch in range(2):
        frames = frame_signal(x[:, ch], 32)
        n = len(frames)
        pad = la + (-(n + la)) % 4  # the lookahead, and whole coarse frames for the cunet
        frames = np.concatenate([frames, np.zeros((pad, 64), np.float32)])
        est = np.asarray(model(frames[None]))[0, la:la + n].transpose(1, 0, 2)
        ref[:, latency:, ch] = overlap_add(est, 32, len(x))[:, :len(x) - latency]
    assert np.abs(got).max() > 1e-3
    assert np.abs(got - ref).max() <= 1e-5


@pytest.mark.parametrize("which", ["tiny_tcn", "tiny_tcn_lookahead", "tiny_cunet"])
def test_stems_add_up_to_the_input(which: str, request: pytest.FixtureRequest) -> None:
    x = music(0.2, channels=1, seed=6)
    stems = Separator.load(request.getfixturevalue(which)[0]).separate(x, block=512)
    assert np.abs(stems.sum(axis=0) - x).max() <= 1e-4


def test_lookahead_must_lie_inside_the_analysis_window() -> None:
    from rtsep.models.tcn import build_tcn

    with pytest.raises(ValueError, match="inside the analysis window"):
        build_tcn(stems=2, analysis_frames=2, lookahead=3, **TINY_TCN)


@pytest.mark.parametrize("change, message", [
    ({"out_frames": 2}, "context_frames == out_frames"),
    ({"lookahead_frames": -1}, "lookahead_frames"),
    ({"state": None}, "state.size"),
    ({"signature": {"key": "serving_default", "input": "frames", "output": "stems"}},
     "state_input"),
])
def test_bad_stateful_cards_are_refused(tiny_tcn: tuple[Path, object], tmp_path: Path,
                                        change: dict, message: str) -> None:
    src = tiny_tcn[0]
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    raw = json.loads(src.with_suffix(".json").read_text())
    raw.update(change)
    write_card(dst, {k: v for k, v in raw.items() if k not in ("format", "sha256")})
    with pytest.raises(ModelError, match=message):
        read_card(dst)


def test_graph_without_state_is_refused(tiny_model: Path, tiny_tcn: tuple[Path, object],
                                        tmp_path: Path) -> None:
    """A card that says stateful beside a window graph: one clear error, before any audio."""
    dst = tmp_path / "mixed.tflite"
    shutil.copy(tiny_model, dst)
    raw = json.loads(tiny_tcn[0].with_suffix(".json").read_text())
    raw["context_frames"] = raw["out_frames"] = 2
    write_card(dst, {k: v for k, v in raw.items() if k not in ("format", "sha256")})
    with pytest.raises(ModelError, match="the card says inputs"):
        Separator.load(dst)


@pytest.mark.parametrize("quantize", ["float16", "int8"])
def test_quantised_stateful_model_passes_parity(tmp_path: Path, quantize: str) -> None:
    """Quantised weights stay within the stated tolerance over a whole streamed sequence, at
    the shipped widths (basis 256, hidden 128; fewer blocks). The tiny test models' 8-channel
    layer norms amplify fp16 rounding past 1e-3: they are no guide to real models."""
    import keras

    from rtsep.convert.cli import example_audio
    from rtsep.convert.keras_to_tflite import convert
    from rtsep.convert.parity import check
    from rtsep.models.tcn import build_tcn

    keras.utils.set_random_seed(0)
    config = {"stems": 3, "dilations": 4, "repeats": 1, "analysis_frames": 4, "lookahead": 2}
    model = build_tcn(**config)
    card = {"variant": "tcn", "config": config, "stems": ["drums", "bass", "other"],
            "sample_rate": 44100, "hop": 32, "runtime": {"out_frames": 4}}
    out = convert(model, card, tmp_path / f"q-{quantize}.tflite", quantize=quantize)
    assert read_card(out).stateful
    report = check(model, out, example_audio(), quantize)
    assert report.ok, report.line()


# -- the causal streaming U-Net (models/cunet.py) -------------------------------------------
def test_cunet_streaming_twin_equals_full_sequence_in_keras() -> None:
    import keras

    from rtsep.models.cunet import build_cunet, state_size

    keras.utils.set_random_seed(5)
    full = build_cunet(stems=3, **TINY_CUNET)
    x = np.random.default_rng(2).normal(0, 0.3, (2, 64, 64)).astype(np.float32)
    ref = np.asarray(full(x))
    for f in (4, 8, 16):  # blocks of whole coarse frames, any size, give the same frames
        twin = build_cunet(stems=3, stream_frames=f, **TINY_CUNET)
        got = _streamed(twin, full, x, state_size(TINY_CUNET))
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_cunet_is_causal_within_its_receptive_field() -> None:
    """No output frame reads a later input frame (through any level's upsampling), nor one
    further back than receptive_field says."""
    import keras

    from rtsep.models.cunet import build_cunet, receptive_field

    keras.utils.set_random_seed(6)
    model = build_cunet(stems=2, **TINY_CUNET)
    rf = receptive_field(TINY_CUNET)
    assert 20 < rf < 120
    x = np.random.default_rng(3).normal(0, 0.3, (1, 128, 64)).astype(np.float32)
    base = np.asarray(model(x))
    for t in (37, 38, 39, 40):  # every phase of the two halving levels
        future = x.copy()
        future[:, t + 1:] = 0.0
        changed = np.abs(np.asarray(model(future)) - base).max(axis=(0, 2, 3))
        assert changed[:t + 1].max() == 0.0 and changed[t + 1:].max() > 0.0
    t = 127
    old = x.copy()
    old[:, :t - rf + 1] = 0.0  # everything before the receptive field of frame t
    assert np.abs(np.asarray(model(old))[:, t] - base[:, t]).max() <= 1e-6


def test_cunet_streams_only_whole_coarse_frames(tmp_path: Path) -> None:
    from rtsep.models.cunet import build_cunet

    with pytest.raises(ValueError, match="multiple of 4"):
        build_cunet(stems=2, stream_frames=6, **TINY_CUNET)
    with pytest.raises(ValueError, match="multiple of 4"):
        build_and_convert(tmp_path, "bad", variant="cunet", out_frames=2)
