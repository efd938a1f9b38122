"""The ``spec`` variant (models/spec.py): its STFT pair inverts exactly, its window model is
the full-sequence model, the engine streams it, and it trains and converts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SPEC, build_and_convert, music

from rtsep.engine import Separator
from rtsep.modelcard import read_card


def _full(model: object, x: np.ndarray) -> np.ndarray:
    """The full-sequence model on mono x (a multiple of 64 samples): float32[stems, samples]."""
    frames = x.reshape(1, -1, 64)
    return np.asarray(model(frames, training=False))[0].transpose(1, 0, 2).reshape(
        -1, x.size)


@pytest.mark.parametrize("n_fft,tflite", [(256, True), (2048, True), (2048, False)])
def test_stft_pair_inverts_exactly(n_fft: int, tflite: bool) -> None:
    from rtsep.models.spec import ISTFT, STFT

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (2, 3 * n_fft // 64, 64)).astype(np.float32)
    re, im = STFT(n_fft)(x)
    assert re.shape == (2, 3 * 4 + 3, n_fft // 2 + 1)  # 4 frames per n_fft, 3 more at the ends
    y = np.asarray(ISTFT(n_fft, tflite)(re[:, :, None], im[:, :, None]))[:, :, 0]
    assert np.abs(y - x).max() < 1e-5


@pytest.mark.parametrize("tflite", [True, False])
def test_inverse_stft_matches_numpy(tflite: bool) -> None:
    """ISTFT (two real FFTs for TFLite, which has no inverse FFT; irfft for training) against
    numpy's irfft and a hand-written Hann^2-normalised overlap-add, on spectra no STFT made,
    per stem (2 stems, 2 examples: the overlap-add keeps them apart)."""
    from rtsep.models.spec import ISTFT

    n, r, m = 256, 64, 9
    rng = np.random.default_rng(1)
    re = rng.normal(size=(2, m, 2, n // 2 + 1)).astype(np.float32)
    im = rng.normal(size=(2, m, 2, n // 2 + 1)).astype(np.float32)
    im[..., 0] = im[..., -1] = 0.0  # a real signal's DC and Nyquist bins
    got = np.asarray(ISTFT(n, tflite)(re, im))
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    for b in range(2):
        for stem in range(2):
            frames = np.fft.irfft(re[b, :, stem] + 1j * im[b, :, stem], n)
            ola = np.zeros((m + 3) * r)
            for j in range(m):
                ola[j * r:j * r + n] += frames[j] * w / 1.5
            want = ola[3 * r:m * r]  # the blocks covered by all 4 frames
            have = got[b, :, stem].reshape(-1)
            assert have.shape == want.shape
            assert np.abs(have - want).max() < 1e-4 * np.abs(want).max()


def test_stems_are_a_partition_of_the_mixture() -> None:
    """Softmax masks sum to 1 across stems: without the residual stem the stems still add up
    to the input, to float rounding (so the residual only fixes rounding)."""
    from rtsep.models.spec import build_spec

    model = build_spec(stems=3, **TINY_SPEC, residual_last=False)
    x = music(0.3, channels=1)[:, 0][: 64 * 200]
    est = _full(model, x)
    assert np.abs(est).max() > 1e-3
    assert np.abs(est.sum(0) - x).max() < 1e-5


@pytest.mark.parametrize("centered,refine,lookahead,past",
                         [(False, [], 4, 10), (True, [], 7, 7), (False, [1, 2], 7, 13)])
def test_window_twin_is_the_full_model_on_the_stream(centered: bool, refine: list[int],
                                                     lookahead: int, past: int) -> None:
    """Windows at several positions of a stream give the full-sequence model's samples on the
    whole stream (the window holds the receptive field); a shorter window or lookahead is
    refused, and the last sample of the window does reach the output (the lookahead is not
    larger than the model needs). Centred dilations (1 and 2 STFT frames) move 3 frames of
    the receptive field from the past to the future; refining blocks of the same dilations
    add 3 frames to both."""
    import keras

    from rtsep.models.spec import build_spec, min_context_frames, min_lookahead_frames, window_twin

    keras.utils.set_random_seed(7)  # a seeded tiny model: the reach check is deterministic
    cfg = {"stems": 2, **TINY_SPEC, "centered": centered, "refine_dilations": refine}
    model = build_spec(**cfg)
    for layer in model.layers:  # refining blocks start as the identity: give them weights
        if layer.name.startswith("refine") and layer.name.endswith("_bn"):
            layer.gamma.assign(np.full(layer.gamma.shape, 0.5, np.float32))
    f, la = 4, min_lookahead_frames(cfg)
    c = min_context_frames(cfg, f)
    assert (la, c) == (lookahead, f + lookahead + past)
    twin = window_twin(model, cfg, c, f, la)
    x = music(0.5, channels=1, seed=3)[:, 0][: 64 * 300]
    full = _full(model, x)  # [stems, samples]
    frames = x.reshape(-1, 64)
    for start in (0, 37, 150, 300 - c):
        win = frames[start:start + c][None]
        got = np.asarray(twin(win, training=False)["stems"])[0]  # [f, stems, 64]
        first = start + c - la - f
        want = full[:, 64 * first:64 * (first + f)].reshape(2, f, 64).transpose(1, 0, 2)
        assert np.abs(got - want).max() < 1e-5, f"window at frame {start}"
    moved = win.copy()
    moved[0, -1] += 0.5
    assert np.abs(np.asarray(twin(moved)["stems"]) - np.asarray(twin(win)["stems"])).max() > 1e-6
    with pytest.raises(ValueError, match=f"lookahead_frames >= {la}"):
        window_twin(model, cfg, c, f, la - 1)
    with pytest.raises(ValueError, match=f"context_frames >= {c}"):
        window_twin(model, cfg, c - 1, f, la)


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return build_and_convert(tmp_path_factory.mktemp("spec"), "tiny-spec", variant="spec",
                             out_frames=2)


@pytest.fixture(scope="module")
def tiny_spec_centered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """Centred dilations: 3 more STFT frames of lookahead (7 engine frames in all)."""
    return build_and_convert(tmp_path_factory.mktemp("spec-c"), "tiny-spec-c", variant="spec",
                             out_frames=2, centered=True)


def test_card_geometry(tiny_spec: tuple[Path, object]) -> None:
    card = read_card(tiny_spec[0])
    assert (card.hop, card.window, card.context_frames, card.out_frames,
            card.lookahead_frames) == (64, "rect", 16, 2, 4)


@pytest.mark.parametrize("fixture,lookahead", [("tiny_spec", 4), ("tiny_spec_centered", 7)])
def test_engine_streams_the_full_sequence_model(fixture: str, lookahead: int,
                                                request: pytest.FixtureRequest) -> None:
    """Output sample n of the engine is the full-sequence model's sample n - latency (on the
    stream preceded by a window of silence, as the engine's first windows see it), stereo, in
    awkward blocks, with the stems adding up to the input: for causal and centred dilations
    (converted to TFLite, whose padding of a dilated convolution must match Keras')."""
    path, model = request.getfixturevalue(fixture)
    x = music(0.3, channels=2, seed=7)
    sep = Separator.load(path).prepare(44100, 999, 2)
    assert sep.latency_samples == 63 + lookahead * 64 + 64
    got = np.concatenate([sep.process(x[i:i + 999]) for i in range(0, len(x), 999)], axis=1)
    lat = sep.latency_samples
    for ch in range(2):
        mono = x[:, ch]
        silence = np.zeros(64 * read_card(path).context_frames, np.float32)
        padded = np.concatenate([silence, mono, np.zeros(-len(mono) % 64, np.float32)])
        want = _full(model, padded)[:, silence.size:silence.size + len(x) - lat]
        assert np.abs(got[:, lat:, ch] - want).max() < 1e-5
    assert np.abs(got.sum(0)[lat:] - x[:-lat]).max() < 1e-4


def test_trains_and_converts(tmp_path: Path) -> None:
    """rtsep train --variant spec on tiny songs: the loss falls, the card's runtime window
    is the shortest that holds the receptive field, and the model converts and evaluates."""
    import json

    from test_train import write_song

    from rtsep.cli import main

    data = tmp_path / "data"
    for i in range(3):
        write_song(data / "train" / f"song{i}", i, seconds=3.0)
    write_song(data / "valid" / "held", 9, seconds=3.0)
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--variant", "spec", "--out", str(run),
            "--config", json.dumps(TINY_SPEC), "--context-frames", "256", "--out-frames",
            "8", "--batch", "4", "--steps-per-epoch", "25", "--val-windows", "16",
            "--threads", "1", "--lr", "3e-3"]
    assert main([*args, "--epochs", "2", "--eval-seconds", "2"]) == 0
    hist = json.loads((run / "state.json").read_text())["history"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    card = read_card(run / "model.tflite")
    assert (card.hop, card.out_frames, card.lookahead_frames, card.context_frames) == (
        64, 8, 4, 8 + 4 + 10)
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["sdr_db"]) == {"drums", "bass", "other", "mean"}
    assert main([*args, "--out", str(tmp_path / "r2"), "--hop", "32", "--epochs", "1"]) == 1
