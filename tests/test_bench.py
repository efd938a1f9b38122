"""`rtsep bench` smoke run: the keys are there and the figures are sane (no timing limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rtsep.bench import run_bench
from rtsep.modelcard import read_card

KEYS = {"algorithmic_latency_samples", "algorithmic_latency_ms", "block_compute_us",
        "realtime_factor", "file_speed_x_realtime", "xruns", "measured_roundtrip_ms",
        "late_blocks", "peak_memory_mb", "latency_terms_samples", "machine"}


def test_bench_json_keys_and_sanity(tmp_path: Path, tiny_model: Path) -> None:
    plot = tmp_path / "h.png"
    res = subprocess.run([sys.executable, "-m", "rtsep", "bench", "-m", str(tiny_model),
                          "--seconds", "1", "--no-file", "--json", "--plot", str(plot)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert KEYS <= set(r)
    card = read_card(tiny_model)
    want = 63 + (card.lookahead_frames + card.out_frames - 1) * card.hop
    assert r["algorithmic_latency_samples"] == want == sum(r["latency_terms_samples"].values())
    assert abs(r["algorithmic_latency_ms"] - want / 44.1) < 1e-2
    c = r["block_compute_us"]
    assert 0 < c["p50"] <= c["p99"] <= c["max"]
    assert r["blocks"] >= 44100 // 64 - 1 and 0 <= r["late_blocks"] <= r["blocks"]
    assert r["realtime_factor"] > 0 and r["peak_memory_mb"] > 10
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_file_speed_is_measured(tiny_model: Path) -> None:
    r = run_bench(str(tiny_model), block=256, threads=1, seconds=0.5, file_seconds=2.0)
    assert r["file_speed_x_realtime"] > 0
    assert r["block"] == 256 and r["block_budget_us"] == round(256 / 44100 * 1e6, 1)
