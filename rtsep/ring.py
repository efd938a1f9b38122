"""A single-producer, single-consumer ring buffer of multichannel float32 frames (numba).

Contract (as pa-ringbuffer's): one reader and one writer; the capacity is a power of two;
:meth:`RingBuffer.write` and :meth:`RingBuffer.read` move as many frames as fit / are there and
return how many really moved; a wraparound is copied as two regions; :meth:`reset` only while
neither side is running. Counters are free-running int64 (they never wrap in practice), kept in
a small array so the jitted kernels can update them without allocating.

Layout is ``(frames, channels)`` like soundfile and sounddevice. Kernels are compiled eagerly
with explicit signatures (``cache=True``) at import, never in an audio callback.
"""

from __future__ import annotations

import numba
import numpy as np

_READ, _WRITE = 0, 1


@numba.njit("int64(float32[:, ::1], int64[::1], float32[:, ::1])", cache=True, nogil=True)
def ring_write(buf, counters, data):  # pragma: no cover - jitted
    cap = buf.shape[0]
    free = cap - (counters[_WRITE] - counters[_READ])
    n = min(data.shape[0], free)
    start = counters[_WRITE] & (cap - 1)
    first = min(n, cap - start)
    buf[start:start + first, :] = data[:first, :]
    buf[0:n - first, :] = data[first:n, :]
    counters[_WRITE] += n
    return n


@numba.njit("int64(float32[:, ::1], int64[::1], float32[:, ::1])", cache=True, nogil=True)
def ring_read(buf, counters, out):  # pragma: no cover - jitted
    cap = buf.shape[0]
    avail = counters[_WRITE] - counters[_READ]
    n = min(out.shape[0], avail)
    start = counters[_READ] & (cap - 1)
    first = min(n, cap - start)
    out[:first, :] = buf[start:start + first, :]
    out[first:n, :] = buf[0:n - first, :]
    counters[_READ] += n
    return n


class RingBuffer:
    """Power-of-two ring of ``(capacity, channels)`` float32 frames; see the module contract."""

    def __init__(self, capacity: int, channels: int) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two; got {capacity}")
        self.buffer = np.zeros((capacity, channels), dtype=np.float32)
        self.counters = np.zeros(2, dtype=np.int64)

    @property
    def capacity(self) -> int:
        return self.buffer.shape[0]

    @property
    def read_available(self) -> int:
        """Frames written and not yet read."""
        return int(self.counters[_WRITE] - self.counters[_READ])

    @property
    def write_available(self) -> int:
        """Frames that can be written without overwriting unread data."""
        return self.capacity - self.read_available

    def write(self, data: np.ndarray) -> int:
        """Copy up to ``len(data)`` frames in; returns the number written."""
        return ring_write(self.buffer, self.counters, data)

    def read(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` frames out into ``out[:n]``; returns n."""
        return ring_read(self.buffer, self.counters, out)

    def reset(self) -> None:
        """Drop everything; only while neither the reader nor the writer runs."""
        self.counters[:] = 0


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, int(n) - 1).bit_length()
