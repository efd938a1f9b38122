"""The live remix: solo, mute, gains in dB (exact once settled), click-free linear ramps,
bypass at the same latency, and transparency on a model whose stems sum to the input."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model, music

from rtsep.engine import Separator
from rtsep.errors import ConfigError
from rtsep.remix import DelayLine, Remix, db_to_gain, parse_gain

RATE = 44100
STEMS = ("drums", "bass", "other")


def sources(frames: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """float32[stems + 1, frames, channels]: three random stems and a 'delayed input'."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, (len(STEMS) + 1, frames, channels)).astype(np.float32)


def run(remix: Remix, src: np.ndarray, block: int | None = None, out_channels: int | None = None
        ) -> np.ndarray:
    frames = src.shape[1]
    out = np.zeros((frames, out_channels or src.shape[2]), np.float32)
    block = block or frames
    for start in range(0, frames, block):
        stop = min(start + block, frames)
        chunk = np.ascontiguousarray(src[:, start:stop])
        part = np.zeros((stop - start, out.shape[1]), np.float32)
        remix.process(chunk, part, stop - start)
        out[start:stop] = part
    return out


def test_default_is_the_sum_of_the_stems() -> None:
    src = sources(500)
    got = run(Remix(STEMS, RATE), src)
    want = src[0] + src[1] + src[2]  # float32, same order as the kernel
    np.testing.assert_array_equal(got, want)


def test_solo_plays_exactly_one_stem() -> None:
    src = sources(300)
    np.testing.assert_array_equal(run(Remix(STEMS, RATE, solo=["bass"]), src), src[1])


def test_mute_removes_stems() -> None:
    src = sources(300)
    got = run(Remix(STEMS, RATE, mute=["drums"]), src)
    np.testing.assert_array_equal(got, src[1] + src[2])
    got = run(Remix(STEMS, RATE, mute=["drums", "other"]), src)
    np.testing.assert_array_equal(got, src[1])


def test_gains_in_db_are_exact_once_settled() -> None:
    src = sources(300)
    remix = Remix(STEMS, RATE, gains_db={"drums": -6.0, "bass": 3.5, "other": -math.inf})
    got = run(remix, src)
    g = [np.float32(10 ** (-6 / 20)), np.float32(10 ** (3.5 / 20))]
    np.testing.assert_array_equal(got, g[0] * src[0] + g[1] * src[1])
    assert remix.gains()[:3].tolist() == [10 ** (-6 / 20), 10 ** (3.5 / 20), 0.0]


def test_change_ramps_linearly_over_15_ms_and_lands_exactly() -> None:
    remix = Remix(STEMS, RATE)
    ramp = remix.ramp
    assert ramp == round(0.015 * RATE)
    src = np.zeros((4, 2 * ramp, 1), np.float32)
    src[0] = 1.0  # a constant on drums: the output is drums' gain, sample by sample
    remix.set_gain("drums", -12.0)
    got = run(remix, src, block=64)[:, 0].astype(np.float64)
    target = 10 ** (-12 / 20)
    k = np.arange(1, ramp + 1)
    expected = 1.0 + (target - 1.0) * k / ramp
    np.testing.assert_allclose(got[:ramp], expected, atol=1e-6)
    assert got[ramp - 1] == np.float32(target)  # lands exactly on the target ...
    assert np.all(got[ramp:] == np.float32(target))  # ... and stays there
    steps = np.diff(np.concatenate([[1.0], got]))
    assert np.all(steps <= 1e-7), "the ramp must be monotonic"
    # No click: no step larger than a linear ramp's (1 - target) / ramp (float32 rounding).
    assert np.abs(steps).max() <= (1 - target) / ramp * 1.01 + 1e-7


def test_ramp_is_the_same_for_any_block_size() -> None:
    src = sources(3000)
    outs = []
    for block in (1, 7, 64, 3000):
        remix = Remix(STEMS, RATE)
        first = run(remix, src[:, :100], block)
        remix.toggle(1)  # bass off
        outs.append(np.concatenate([first, run(remix, src[:, 100:], block)]))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_new_target_mid_ramp_continues_from_where_the_gain_is() -> None:
    remix = Remix(STEMS, RATE)
    src = np.zeros((4, 3 * remix.ramp, 1), np.float32)
    src[0] = 1.0
    half = remix.ramp // 2
    remix.mute("drums")
    a = run(remix, src[:, :half])[:, 0]
    remix.mute("drums", False)  # back up before the ramp down is over
    b = run(remix, src[:, half:])[:, 0]
    g = np.concatenate([[1.0], a, b]).astype(np.float64)
    assert np.abs(np.diff(g)).max() <= 1.0 / remix.ramp * 1.01  # continuous: no jump
    assert g.min() == pytest.approx(1.0 - half / remix.ramp, abs=1e-5)
    assert g[-1] == 1.0


def test_toggle_and_restore() -> None:
    remix = Remix(STEMS, RATE, gains_db={"bass": -6.0})
    remix.toggle(0)
    remix.toggle(2)
    assert remix.targets().tolist() == [0.0, db_to_gain(-6.0), 0.0, 0.0]
    remix.restore()  # all stems back, at their gains
    assert remix.targets().tolist() == [1.0, db_to_gain(-6.0), 1.0, 0.0]
    remix.set_bypass(True)
    assert remix.targets().tolist() == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("channels,out_channels", [(1, 2), (2, 1)])
def test_channel_mapping(channels: int, out_channels: int) -> None:
    src = sources(200, channels)
    got = run(Remix(STEMS, RATE, solo=["other"]), src, out_channels=out_channels)
    if channels == 1:
        np.testing.assert_array_equal(got, np.repeat(src[2], 2, axis=1))
    else:
        np.testing.assert_allclose(got[:, 0], src[2].mean(axis=1), atol=1e-7)


def test_peaks_are_metered_and_reset() -> None:
    remix = Remix(STEMS, RATE, mute=["drums"])
    src = sources(100)
    src[0, 10, 1] = 0.9  # muted drums are still metered (what is in the stem)
    run(remix, src)
    p = remix.take_peaks()
    assert p[0] == np.float32(0.9)
    assert p[-1] == np.abs(src[1] + src[2]).max()
    assert not remix.take_peaks().any()


def test_process_allocates_nothing() -> None:
    remix = Remix(STEMS, RATE)
    src = sources(256)
    out = np.zeros((256, 2), np.float32)
    remix.process(src, out, 256)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(200):
            if i % 50 == 0:
                remix.toggle(i % 3)
            remix.process(src, out, 256)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - base <= 64 and peak - base < 2048, (current - base, peak - base)


def test_bad_names_and_gains_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"^unknown stem 'vocals': this model has drums, "
                                          r"bass, other$"):
        Remix(STEMS, RATE, solo=["vocals"])
    assert parse_gain("bass=-6", STEMS) == ("bass", -6.0)
    assert parse_gain("drums=-inf", STEMS) == ("drums", -math.inf)
    with pytest.raises(ConfigError, match="STEM=DB"):
        parse_gain("bass", STEMS)
    with pytest.raises(ConfigError, match="not a number of dB"):
        parse_gain("bass=loud", STEMS)
    with pytest.raises(ConfigError, match=r"\+24 dB"):
        parse_gain("bass=40", STEMS)


# -- with a real separator --------------------------------------------------------------------

@pytest.fixture(scope="module")
def residual_model(model_dir: Path) -> Path:
    """Three stems, the last is input minus the others: the stems sum to the input."""
    return make_model(model_dir, "residual", stems=STEMS, residual_last=True)


def separate_and_remix(model: Path, x: np.ndarray, remix: Remix, block: int = 64,
                       switch_at: int | None = None) -> tuple[np.ndarray, int]:
    """The live path's order of operations: process_into, delay line, remix."""
    sep = Separator.load(model).prepare(RATE, block, x.shape[1])
    delay = DelayLine(sep.latency_samples, x.shape[1], block)
    src = np.zeros((len(sep.stems) + 1, block, x.shape[1]), np.float32)
    out = np.zeros_like(x)
    for start in range(0, len(x) - block + 1, block):
        if switch_at is not None and start == switch_at:
            remix.set_bypass(not remix.bypass)
        blk = np.ascontiguousarray(x[start:start + block])
        sep.process_into(blk, src[:-1])
        delay.process(blk, src[-1])
        remix.process(src, out[start:start + block], block)
    return out, sep.latency_samples


def test_transparent_model_at_0_db_gives_the_delayed_input(residual_model: Path) -> None:
    x = music(0.3, 2, RATE, seed=3)
    got, latency = separate_and_remix(residual_model, x, Remix(STEMS, RATE))
    n = len(x) - len(x) % 64
    assert np.abs(got[:latency]).max() == 0.0
    np.testing.assert_allclose(got[latency:n], x[: n - latency], atol=1e-4)


def test_bypass_has_the_same_latency(residual_model: Path) -> None:
    x = music(0.3, 2, RATE, seed=4)
    n = len(x) - len(x) % 64
    remix = Remix(STEMS, RATE)
    remix.set_bypass(True)
    remix.settle()
    bypassed, latency = separate_and_remix(residual_model, x, remix)
    np.testing.assert_array_equal(bypassed[latency:n], x[: n - latency])
    # Switching in the middle: still the input, delayed the same (a transparent model).
    switched, _ = separate_and_remix(residual_model, x, Remix(STEMS, RATE), switch_at=64 * 80)
    np.testing.assert_allclose(switched[latency:n], x[: n - latency], atol=1e-4)
