"""The streaming engine: equal to an offline reference for any block size, exact delay,
no allocation in process_into, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import block_allocations, make_model, music

from rtsep.engine import Separator
from rtsep.errors import ConfigError
from rtsep.framing import frame_signal, overlap_add
from rtsep.modelcard import read_card
from rtsep.runtime import ModelRunner


def offline_reference(tflite: Path, x: np.ndarray) -> np.ndarray:
    """The separation by definition, written independently of the engine: frame the whole
    signal, run every window through the model one at a time, overlap-add, delay by the
    latency. Returns float32[stems, frames, channels]."""
    card = read_card(tflite)
    runner = ModelRunner(card, tflite.read_bytes(), batch=1, threads=1)
    n, channels = x.shape
    c_, f_, la, hop = card.context_frames, card.out_frames, card.lookahead_frames, card.hop
    latency = card.frame - 1 + la * hop + (f_ - 1) * hop
    out = np.zeros((len(card.stems), n, channels), np.float32)
    for ch in range(channels):
        frames = frame_signal(x[:, ch], hop)
        k_total = len(frames)
        padded = np.concatenate([np.zeros((c_, 64), np.float32), frames,
                                 np.zeros((c_ + la + f_, 64), np.float32)])
        est = np.zeros((len(card.stems), k_total, 64), np.float32)
        w = 1
        while True:
            newest = w * f_ - 1
            first = newest - la - f_ + 1
            if first >= k_total:
                break
            window = padded[newest + 1: newest + 1 + c_][None]  # frames newest-c+1..newest
            y = runner.run(window)[0]  # [out_frames, stems, 64]
            for f in range(f_):
                k = first + f
                if 0 <= k < k_total:
                    est[:, k] = y[f].transpose(0, 1)
            w += 1
        sig = overlap_add(est, hop, n)  # [stems, n]
        out[:, latency:, ch] = sig[:, : n - latency]
    return out


def first_mismatch(a: np.ndarray, b: np.ndarray, tol: float) -> str:
    bad = np.argwhere(np.abs(a - b) > tol)
    if len(bad) == 0:
        return "none"
    s, i, c = bad[0]
    return f"stem {s}, sample {i}, channel {c}: {a[s, i, c]} != {b[s, i, c]}"


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    return music(0.25, channels=2, seed=1)


def test_one_call_equals_offline_reference(tiny_model: Path, signal: np.ndarray) -> None:
    sep = Separator.load(tiny_model).prepare(44100, len(signal), 2)
    got = sep.process(signal)
    ref = offline_reference(tiny_model, signal)
    assert np.abs(got).max() > 1e-3  # the model does something
    assert np.abs(got - ref).max() <= 1e-5, first_mismatch(got, ref, 1e-5)


@pytest.mark.parametrize("block", [1, 7, 31, 32, 33, 4096, None])
def test_streaming_equals_one_call(either_model: Path, signal: np.ndarray, block: int | None
                                   ) -> None:
    sep = Separator.load(either_model)
    whole = sep.prepare(44100, len(signal), 2).process(signal)
    block = block or len(signal)
    sep.prepare(44100, block, 2)
    streamed = np.concatenate([sep.process(signal[i:i + block])
                               for i in range(0, len(signal), block)], axis=1)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() <= 1e-5, first_mismatch(streamed, whole, 1e-5)


@pytest.mark.parametrize("hop", [16, 32, 64])
def test_identity_model_returns_input_delayed_by_latency(model_dir: Path, hop: int) -> None:
    path = make_model(model_dir, f"identity_h{hop}", stems=("all",), identity=True, hop=hop,
                      lookahead=1, out_frames=3)
    sep = Separator.load(path)
    assert sep.latency_samples == 63 + hop + 2 * hop
    x = music(0.1, channels=2, seed=2)
    sep.prepare(44100, 100, 2)
    y = np.concatenate([sep.process(x[i:i + 100]) for i in range(0, len(x), 100)], axis=1)[0]
    d = sep.latency_samples
    assert np.abs(y[:d]).max() == 0.0  # the first latency_samples come from silence
    np.testing.assert_allclose(y[d:], x[:-d], atol=2e-6)


def test_flush_returns_the_tail_and_resets(identity_model: Path) -> None:
    sep = Separator.load(identity_model).prepare(44100, 512, 1)
    x = music(0.05, channels=1, seed=3)
    head = sep.process(x)[0]
    tail = sep.flush()[0]
    y = np.concatenate([head, tail])
    np.testing.assert_allclose(y[sep.latency_samples:], x, atol=2e-6)
    again = sep.process(x)[0]  # after flush the stream starts over
    np.testing.assert_allclose(again, head, atol=1e-7)


def test_reset_gives_the_same_output_again(either_model: Path, signal: np.ndarray) -> None:
    sep = Separator.load(either_model).prepare(44100, 256, 2)
    a = sep.process(signal)
    sep.reset()
    b = sep.process(signal)
    np.testing.assert_array_equal(a, b)


def test_channels_are_separated_independently(either_model: Path, signal: np.ndarray) -> None:
    sep = Separator.load(either_model)
    stereo = sep.prepare(44100, 512, 2).process(signal)
    left = sep.prepare(44100, 512, 1).process(np.ascontiguousarray(signal[:, :1]))
    assert np.abs(stereo[:, :, :1] - left).max() <= 1e-5


def test_process_into_allocates_nothing(either_model: Path, signal: np.ndarray) -> None:
    block = 1024
    signal = np.tile(signal, (4, 1))
    sep = Separator.load(either_model).prepare(44100, block, 2)
    retained, peak, where = block_allocations(sep, signal, block, warmup=3)
    # No buffer is allocated per block: nothing grows with the number of blocks (a counter's
    # new int object is all that stays), and the transient peak (argument boxing, tensor view
    # objects: a few hundred bytes) stays far below one block of float32 output
    # (2 stems * 1024 frames * 2 channels * 4 bytes = 16 KiB).
    assert retained <= 64, f"retained {retained} bytes, at {where}"
    assert peak < 4096, f"transient peak {peak} bytes"


def test_bad_blocks_are_refused(tiny_model: Path) -> None:
    sep = Separator.load(tiny_model)
    with pytest.raises(ConfigError, match="prepare"):
        sep.process(np.zeros((4, 2), np.float32))
    sep.prepare(44100, 64, 2)
    with pytest.raises(ConfigError, match=r"float32\[frames, 2\]"):
        sep.process(np.zeros((2, 4), np.float32).T[:, :1])
    with pytest.raises(ConfigError, match="got int16"):
        sep.process(np.zeros((4, 2), np.int16))
    assert sep.process(np.zeros((4, 2), np.float64)).dtype == np.float32
    with pytest.raises(ConfigError, match="exceeds max_block 64"):
        sep.process_into(np.zeros((65, 2), np.float32), np.zeros((2, 65, 2), np.float32))
    with pytest.raises(ConfigError, match="runs at 44100 Hz, got 48000 Hz"):
        sep.prepare(48000, 64, 2)
    with pytest.raises(ConfigError, match="channels must be 1 to 8, got 9"):
        sep.prepare(44100, 64, 9)
