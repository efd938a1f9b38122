import numpy as np
import pytest

from rtsep.ring import RingBuffer, next_pow2


def test_write_read_counts_and_wraparound() -> None:
    ring = RingBuffer(8, 2)
    data = np.arange(20, dtype=np.float32).reshape(10, 2)
    assert ring.write(data[:6]) == 6
    out = np.zeros((4, 2), np.float32)
    assert ring.read(out) == 4
    np.testing.assert_array_equal(out, data[:4])
    # 2 unread + 6 new = 8 = capacity: the write wraps around the end of the buffer.
    assert ring.write(data[4:]) == 6
    assert ring.read_available == 8 and ring.write_available == 0
    assert ring.write(data[:1]) == 0  # full: nothing moves
    out = np.zeros((10, 2), np.float32)
    assert ring.read(out) == 8  # more asked than there is: returns what moved
    np.testing.assert_array_equal(out[:8], np.concatenate([data[4:6], data[4:]]))


def test_reset_and_capacity_contract() -> None:
    ring = RingBuffer(4, 1)
    ring.write(np.ones((3, 1), np.float32))
    ring.reset()
    assert ring.read_available == 0
    with pytest.raises(ValueError, match="power of two"):
        RingBuffer(6, 1)
    assert [next_pow2(n) for n in (1, 2, 3, 64, 65)] == [1, 2, 4, 64, 128]
