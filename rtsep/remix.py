"""What live mode plays: a remix of the stems with per-stem gains, changed without clicks.

The sources of the remix are the separated stems plus the input itself delayed by the model's
latency (:class:`DelayLine`), which is what "bypass" plays. Solo, mute, bypass and gains only
change gains, and every source has the same delay, so none of them changes the latency.

Gains are *targets* set from any thread (keyboard, command line). The audio callback's kernel
ramps each gain linearly from where it is to its new target over a fixed time (15 ms by
default) and ends exactly on the target, so a change never clicks and a settled gain is exact.
If a target changes mid-ramp, a new ramp starts from the current value. The ramp is computed
in float64 as ``start + (goal - start) * k / ramp``: monotonic, no accumulated rounding.

Layouts (C-contiguous float32): sources ``[stems + 1, frames, channels]`` (last: the delayed
input), output ``[frames, out_channels]``; out_channels equals channels, or one of them is 1
(mono is copied to every output, or the channels are averaged into one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numba
import numpy as np

from .errors import ConfigError
from .ring import RingBuffer, next_pow2

RAMP_MS = 15.0
MAX_GAIN_DB = 24.0


@numba.njit("void(float32[:, :, ::1], int64, float64[::1], float64[::1], float64[::1],"
            " float64[::1], int64[::1], int64, float32[:, ::1], float32[::1])",
            cache=True, nogil=True)
def remix_kernel(src, n, target, goal, start, current, pos, ramp, out,
                 peaks):  # pragma: no cover - jitted
    """out[:n] = sum over sources of gain * src[source, :n]; gains ramp towards ``target``.

    ``peaks[source]`` (and ``peaks[-1]`` for the output) keep the running max |sample|."""
    sources, ch = src.shape[0], src.shape[2]
    cout = out.shape[1]
    for s in range(sources):
        if target[s] != goal[s]:  # a new target: ramp from wherever the gain is now
            start[s] = current[s]
            goal[s] = target[s]
            pos[s] = 0
    for i in range(n):
        for c in range(cout):
            out[i, c] = 0.0
    for s in range(sources):
        peak = peaks[s]
        for i in range(n):
            if pos[s] < ramp:
                pos[s] += 1
                if pos[s] == ramp:
                    current[s] = goal[s]
                else:
                    current[s] = start[s] + (goal[s] - start[s]) * (pos[s] / ramp)
            g = np.float32(current[s])
            if ch == cout:
                for c in range(ch):
                    x = src[s, i, c]
                    out[i, c] += g * x
                    peak = max(peak, abs(x))
            elif ch == 1:
                x = src[s, i, 0]
                peak = max(peak, abs(x))
                for c in range(cout):
                    out[i, c] += g * x
            else:  # cout == 1: average the channels
                acc = np.float32(0.0)
                for c in range(ch):
                    acc += src[s, i, c]
                    peak = max(peak, abs(src[s, i, c]))
                out[i, 0] += g * (acc / np.float32(ch))
        peaks[s] = peak
    peak = peaks[sources]
    for i in range(n):
        for c in range(cout):
            peak = max(peak, abs(out[i, c]))
    peaks[sources] = peak


def db_to_gain(db: float) -> float:
    """Decibels to a linear gain; -inf dB is silence."""
    return 0.0 if db == -math.inf else 10.0 ** (db / 20.0)


def parse_gain(text: str, stems: Sequence[str]) -> tuple[str, float]:
    """``STEM=DB`` (e.g. ``bass=-6``, ``drums=-inf``) checked against the model's stems."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"--gain expects STEM=DB (for example bass=-6), got {text!r}")
    check_stem(name, stems)
    try:
        db = float(value)
    except ValueError:
        raise ConfigError(f"--gain {text!r}: {value.strip()!r} is not a number of dB") from None
    if math.isnan(db) or db > MAX_GAIN_DB:
        raise ConfigError(f"--gain {text!r}: gains go from -inf to +{MAX_GAIN_DB:g} dB")
    return name, db


def check_stem(name: str, stems: Sequence[str]) -> int:
    """Index of stem ``name``; a ConfigError naming the model's stems otherwise."""
    if name not in stems:
        raise ConfigError(f"unknown stem {name!r}: this model has {', '.join(stems)}")
    return list(stems).index(name)


class Remix:
    """Per-stem gains, mute/solo/bypass state, and the allocation-free remix of one block."""

    def __init__(self, stems: Sequence[str], sample_rate: int, ramp_ms: float = RAMP_MS,
                 solo: Iterable[str] = (), mute: Iterable[str] = (),
                 gains_db: Mapping[str, float] | None = None) -> None:
        self.stems = tuple(stems)
        n = len(self.stems) + 1  # + the delayed input (bypass)
        self.ramp = max(1, round(ramp_ms * sample_rate / 1000.0))
        self.gain_db = [0.0] * len(self.stems)
        for name, db in (gains_db or {}).items():
            self.gain_db[check_stem(name, self.stems)] = float(db)
        solo = [check_stem(s, self.stems) for s in solo]
        muted = {check_stem(s, self.stems) for s in mute}
        self.enabled = [(not solo or i in solo) and i not in muted
                        for i in range(len(self.stems))]
        self.bypass = False
        # Kernel state. Only ``_target`` is written by other threads (element by element).
        self._target = np.zeros(n, np.float64)
        self._goal = np.zeros(n, np.float64)
        self._start = np.zeros(n, np.float64)
        self._current = np.zeros(n, np.float64)
        self._pos = np.full(n, self.ramp, np.int64)
        self.peaks = np.zeros(n + 1, np.float32)
        self._update()
        self.settle()

    # -- control (any thread) --------------------------------------------------------------
    def toggle(self, index: int) -> None:
        """Switch stem ``index`` (0-based) on or off; leaves bypass."""
        self.enabled[index] = not self.enabled[index]
        self.bypass = False
        self._update()

    def restore(self) -> None:
        """Every stem on (at its gain), bypass off."""
        self.enabled = [True] * len(self.stems)
        self.bypass = False
        self._update()

    def solo(self, name: str) -> None:
        i = check_stem(name, self.stems)
        self.enabled = [j == i for j in range(len(self.stems))]
        self.bypass = False
        self._update()

    def mute(self, name: str, muted: bool = True) -> None:
        self.enabled[check_stem(name, self.stems)] = not muted
        self._update()

    def set_gain(self, name: str, db: float) -> None:
        self.gain_db[check_stem(name, self.stems)] = float(db)
        self._update()

    def set_bypass(self, on: bool) -> None:
        """Play the input (delayed by the model's latency) instead of the remix."""
        self.bypass = bool(on)
        self._update()

    def targets(self) -> np.ndarray:
        """The gains being ramped towards: float64[stems + 1] (last: the delayed input)."""
        return self._target.copy()

    def gains(self) -> np.ndarray:
        """The gains applied at the last sample processed: float64[stems + 1]."""
        return self._current.copy()

    def settle(self) -> None:
        """Jump to the targets without a ramp (before the stream starts)."""
        self._goal[:] = self._target
        self._start[:] = self._target
        self._current[:] = self._target
        self._pos[:] = self.ramp

    def take_peaks(self) -> np.ndarray:
        """Peak |sample| per source and of the output since the last call, then reset."""
        p = self.peaks.copy()
        self.peaks[:] = 0.0
        return p

    def _update(self) -> None:
        s = len(self.stems)
        for i in range(s):
            on = self.enabled[i] and not self.bypass
            self._target[i] = db_to_gain(self.gain_db[i]) if on else 0.0
        self._target[s] = 1.0 if self.bypass else 0.0

    # -- audio (the callback) --------------------------------------------------------------
    def process(self, sources: np.ndarray, out: np.ndarray, n: int) -> None:
        """out[:n] = the remix of sources[:, :n]; allocates nothing.

        sources float32[stems + 1, >= n, channels], out float32[>= n, out_channels]."""
        remix_kernel(sources, n, self._target, self._goal, self._start, self._current,
                     self._pos, self.ramp, out, self.peaks)


class DelayLine:
    """Delays float32[frames, channels] blocks by exactly ``delay`` samples, allocation-free:
    the bypass path gets the model's latency, so switching to it keeps the timing."""

    def __init__(self, delay: int, channels: int, max_block: int) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.delay = delay
        self._ring = RingBuffer(next_pow2(delay + max_block), channels)
        self._zeros = np.zeros((delay, channels), np.float32)
        self.reset()

    def reset(self) -> None:
        """Only while no callback runs."""
        self._ring.reset()
        self._ring.write(self._zeros)

    def process(self, block: np.ndarray, out: np.ndarray) -> None:
        """out = block delayed; both C-contiguous float32[n, channels], n <= max_block."""
        self._ring.write(block)
        self._ring.read(out)
