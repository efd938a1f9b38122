"""The live round trip of ``rtsep bench --live``: clicks through ``rtsep live`` on a private JACK
dummy server come back exactly when the arithmetic says, and no server means a quick "not
measured".

The model's stems sum to its input, so the path gives the input back delayed at 0 dB: its
algorithmic latency is 63 + 2*32 + (2-1)*32 = 159 samples, and the round trip adds PortAudio's
one block of output FIFO and one JACK period for the cycle measurer -> rtsep -> measurer
(rtsep/bench_live.py). Tolerance of the correlation peak: one JACK period, the delay an xrun
inside rtsep adds to the clicks in flight (the dummy driver misses deadlines on a busy machine);
the fastest of the 8 clicks, which no xrun delayed, must match exactly. The analysis itself is
checked exactly on synthetic signals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model, skip_unless_installed
from jack import JackServer, jackd_path

from rtsep.bench_live import (
    NO_SERVER,
    click_lags,
    click_train,
    expected_roundtrip,
    find_delay,
    parse_summary,
    roundtrip,
)

RATE, PERIOD = 44100, 64
ALGORITHMIC = 159
KEYS = {"measured_roundtrip_ms", "expected_roundtrip_ms", "roundtrip_error_ms", "xruns",
        "roundtrip_samples", "expected_roundtrip_samples", "roundtrip_terms_samples",
        "roundtrip_correlation", "device_latency_samples", "jack_period", "jack_xruns"}


def test_find_delay_is_exact_on_a_delayed_copy() -> None:
    sig, pos = click_train(max_lag=1000, clicks=6, seed=3)
    assert np.diff(pos).min() > 1000 and len(sig) == pos[-1] + 1001
    rng = np.random.default_rng(0)
    for lag in (0, 1, 287, 999):
        got = np.zeros_like(sig)
        got[lag:] = sig[: len(sig) - lag]
        assert find_delay(sig, got, 1000) == (lag, pytest.approx(1.0))
        assert click_lags(got, pos, 1000) == [lag] * 6
        noisy = -0.7 * got + rng.normal(0, 0.01, len(got)).astype(np.float32)
        found, peak = find_delay(sig, noisy, 1000)  # any polarity, some noise
        assert found == lag and 0.5 < peak < 1.0
    assert find_delay(sig, np.zeros_like(sig), 1000) == (0, 0.0)
    late = np.zeros_like(sig)  # click 2 a period later than the others, click 4 lost
    late[pos + 935] = 0.5
    late[pos[2] + 935] = 0.0
    late[pos[2] + 999] = 0.5
    late[pos[4] + 935] = 0.0
    late[pos[4] + 100] = 0.01  # noise where the echo went missing
    assert click_lags(late, pos, 1000) == [935, 935, 999, 935, None, 935]


def test_summary_and_arithmetic() -> None:
    line = ("rtsep live: stopped (SIGTERM) after 120 blocks (0.17 s); xruns 3 (callbacks "
            "flagged: input underflow 0, input overflow 3, output underflow 3, output overflow "
            "0); late blocks 1; latency 159 samples (3.61 ms) algorithmic + 128 samples "
            "(2.90 ms) device = 287 samples (6.51 ms)")
    assert parse_summary(line) == {"blocks": 120, "xruns": 3, "late_blocks": 1,
                                   "latency_samples": 159, "device_latency_samples": 128}
    assert parse_summary("rtsep: error: no output device") is None
    assert sum(expected_roundtrip(159, 64, 64).values()) == 287


def test_no_server_returns_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"rtsep-nobody-{os.getpid()}")
    t0 = time.monotonic()
    r = roundtrip(None, 64, 1)
    assert time.monotonic() - t0 < 10.0
    assert r["measured_roundtrip_ms"] is None and r["xruns"] is None
    if jackd_path() is not None:  # with jack_wait installed the check is the server's answer
        assert r["roundtrip_note"] == NO_SERVER


@pytest.fixture(scope="module")
def jack_env() -> Iterator[JackServer]:
    skip_unless_installed(jackd_path() is not None,
                          "jackd is not installed (apt-get install jackd2 libportaudio2)")
    with JackServer(rate=RATE, period=PERIOD) as server:
        yield server


@pytest.fixture(scope="module")
def summing_model(model_dir: Path) -> Path:
    """Stems a and b with b = input - a: the remix at 0 dB is the input, delayed."""
    return make_model(model_dir, "bench_summing", residual_last=True)


@pytest.mark.parametrize("block", [64, 128])
def test_roundtrip_matches_the_arithmetic(jack_env: JackServer, summing_model: Path,
                                          block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack_env.name)
    r = roundtrip(str(summing_model), block, 1, timeout=45.0)
    print({k: v for k, v in r.items()})
    assert KEYS <= set(r), r
    expected = ALGORITHMIC + block + PERIOD
    assert r["roundtrip_terms_samples"] == {"algorithmic": ALGORITHMIC, "portaudio_block": block,
                                            "jack_cycle": PERIOD}
    assert r["expected_roundtrip_samples"] == expected
    assert r["expected_roundtrip_ms"] == round(1000 * expected / RATE, 3)
    assert r["jack_period"] == PERIOD
    # Timing is not asserted: on a busy machine xruns delay some clicks (never advance them),
    # which lowers the correlation peak and can move it; the clicks must come back, and the
    # fastest one (a click no xrun delayed) must take exactly the arithmetic's path.
    assert r["roundtrip_correlation"] > 0.1, r
    assert r["roundtrip_samples"] >= expected, r
    assert r["roundtrip_fastest_click_samples"] == expected, r  # a click no xrun delayed
    assert r["roundtrip_error_samples"] == r["roundtrip_samples"] - expected
    assert r["roundtrip_error_ms"] == pytest.approx(
        r["measured_roundtrip_ms"] - r["expected_roundtrip_ms"], abs=2e-3)
    assert isinstance(r["xruns"], int) and r["xruns"] >= 0
    assert isinstance(r["device_latency_samples"], int)
