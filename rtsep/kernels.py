"""Numba kernels of the streaming engine: framing, overlap-add and emission.

Shapes (all C-contiguous float32):
- ``hist[channels, S]``: the last S = (context-1)*H + N input samples of every channel.
- ``batch[B, context, N]``: model input; slot ``b`` holds one channel's window.
- ``y[B, F, stems, N]``: model output, F frames per window.
- ``ola[stems, channels, cap]``: overlap-add accumulator, a ring indexed by sample number.
- ``out[stems, frames, channels]``: emitted output (any strides, so a slice will do).
- ``ring[stems, size, channels]``: an ensemble member's delayed stems, indexed by sample number.
Compiled eagerly with explicit signatures and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit("void(float32[:, ::1], float32[:, ::1], int64)", cache=True, nogil=True)
def shift_in(hist, fresh, n):  # pragma: no cover - jitted
    """Shift every channel of ``hist`` left by n and append ``fresh[:n, c]`` (frames-major)."""
    channels, size = hist.shape
    for c in range(channels):
        for i in range(size - n):
            hist[c, i] = hist[c, i + n]
        for i in range(n):
            hist[c, size - n + i] = fresh[i, c]


@numba.njit("void(float32[:, ::1], int64, float32[:, :, ::1], int64)", cache=True, nogil=True)
def gather_windows(hist, hop, batch, slot0):  # pragma: no cover - jitted
    """batch[slot0 + c, f, :] = hist[c, f*hop : f*hop + N] for every channel c and frame f."""
    channels = hist.shape[0]
    context, frame = batch.shape[1], batch.shape[2]
    for c in range(channels):
        for f in range(context):
            base = f * hop
            for i in range(frame):
                batch[slot0 + c, f, i] = hist[c, base + i]


@numba.njit("void(float32[:, :, :, ::1], int64, int64, int64, int64, float32[::1],"
            " float32[:, :, ::1])", cache=True, nogil=True)
def overlap_add(y, slot0, channels, first_frame, hop, window, ola):  # pragma: no cover
    """Add window * y[slot0 + c, f, s] into ola at the samples of global frame first_frame + f.

    Frame k starts at sample k*hop - (N - hop); frames k < 0 cover only the silence before the
    stream and are skipped."""
    frames, stems, frame = y.shape[1], y.shape[2], y.shape[3]
    mask = ola.shape[2] - 1
    for f in range(frames):
        k = first_frame + f
        if k < 0:
            continue
        start = k * hop - (frame - hop)
        for s in range(stems):
            for c in range(channels):
                for i in range(frame):
                    pos = start + i
                    if pos >= 0:
                        ola[s, c, pos & mask] += window[i] * y[slot0 + c, f, s, i]


@numba.njit("void(float32[:, :, ::1], int64, float32[:, :, :], int64)", cache=True,
            nogil=True)
def emit(ola, first_sample, out, n):  # pragma: no cover - jitted
    """out[s, i, c] = ola at sample first_sample + i (0 before the stream), then clear it."""
    stems, channels = ola.shape[0], ola.shape[1]
    mask = ola.shape[2] - 1
    for i in range(n):
        m = first_sample + i
        if m < 0:
            for s in range(stems):
                for c in range(channels):
                    out[s, i, c] = 0.0
        else:
            p = m & mask
            for s in range(stems):
                for c in range(channels):
                    out[s, i, c] = ola[s, c, p]
                    ola[s, c, p] = 0.0


@numba.njit("void(float32[:, :, ::1], int64, float32[:, :, ::1], int64, int64, float32, boolean,"
            " float32[:, :, :])", cache=True, nogil=True)
def delay_mix(ring, written, block, n, delay, weight, add, out):  # pragma: no cover - jitted
    """An ensemble member's delay line: store block[:, :n] in ``ring`` (a power-of-two ring
    of stems x samples x channels) at samples written .. written + n - 1, then set (or with
    ``add`` add to) out[:, i] weight times the sample written + i - delay (0 before the
    stream). The ring holds at least delay + n samples."""
    stems, size, channels = ring.shape
    mask = size - 1
    for i in range(n):
        p = (written + i) & mask
        for s in range(stems):
            for c in range(channels):
                ring[s, p, c] = block[s, i, c]
    for i in range(n):
        m = written + i - delay
        for s in range(stems):
            for c in range(channels):
                v = weight * ring[s, m & mask, c] if m >= 0 else np.float32(0.0)
                out[s, i, c] = out[s, i, c] + v if add else v
