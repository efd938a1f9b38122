"""``rtsep bench``: latency and CPU cost of a model on this machine, measured honestly.

- algorithmic latency from the model card (the one formula, term by term);
- per-block compute time of ``process_into`` at the live block size over real music (the
  bundled example, looped), blocks paced at real time like an audio callback's, after a
  warm-up: p50 / p99 / max, the real-time factor (compute time over audio time) and late blocks
  (compute longer than the block lasts);
- file-mode throughput on a 60 s stereo file, in x real time;
- peak memory of the process;
- with ``--live`` and a reachable JACK server: a click sent through the live path and found
  again by cross-correlation (``measured_roundtrip_ms``) against the arithmetic, and xruns.
Numbers are ratios and percentiles of this run on this machine; nothing here is asserted.
"""

from __future__ import annotations

import json
import platform
import resource
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .engine import Stream, load
from .errors import ConfigError
from .filemode import separate_file


def example_music(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    """The bundled example clip looped to ``seconds``: float32[frames, channels]."""
    clip = Path(str(resources.files("rtsep") / "examples" / "example.flac"))
    data, sr = sf.read(str(clip), dtype="float32", always_2d=True)
    if sr != rate:
        import soxr

        data = soxr.resample(data, sr, rate).astype(np.float32)
    data = data[:, :channels] if data.shape[1] >= channels else np.repeat(data, channels, 1)
    reps = int(np.ceil(seconds * rate / len(data)))
    return np.ascontiguousarray(np.tile(data, (reps, 1))[: int(seconds * rate)])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def block_timing(sep: Stream, block: int, seconds: float,
                 warmup_seconds: float = 1.0) -> dict[str, Any]:
    """Time ``process_into`` per block over ``seconds`` of music (stereo), after a warm-up."""
    rate = sep.sample_rate
    music = example_music(seconds + warmup_seconds, rate)
    sep.prepare(rate, block, 2)
    out = np.zeros((len(sep.stems), block, 2), np.float32)
    blocks = len(music) // block
    warm = int(warmup_seconds * rate) // block
    times = np.zeros(blocks - warm, np.float64)
    # Blocks are paced at real time, as an audio callback sees them: back-to-back calls keep
    # the weights in cache and measure about half the cost a live callback pays.
    start = time.perf_counter()
    for i in range(blocks):
        x = music[i * block:(i + 1) * block]
        due = start + i * block / rate
        while (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        t0 = time.perf_counter()
        sep.process_into(x, out)
        dt = time.perf_counter() - t0
        if i >= warm:
            times[i - warm] = dt
    budget = block / rate
    us = times * 1e6
    return {
        "block": block,
        "block_budget_us": round(budget * 1e6, 1),
        "block_compute_us": {"p50": round(float(np.percentile(us, 50)), 1),
                             "p99": round(float(np.percentile(us, 99)), 1),
                             "max": round(float(us.max()), 1)},
        "realtime_factor": round(float(times.sum() / (len(times) * budget)), 4),
        "late_blocks": int((times > budget).sum()),
        "blocks": int(len(times)),
        "_times_us": us,
    }


def file_speed(sep: Stream, seconds: float = 60.0) -> float:
    """x real time of ``rtsep file`` on a ``seconds`` long stereo 44.1 kHz file."""
    rate = sep.sample_rate
    with tempfile.TemporaryDirectory() as d:
        song = Path(d) / "bench.wav"
        sf.write(song, example_music(seconds, rate), rate, subtype="PCM_16")
        res = separate_file(sep, song, Path(d) / "out", sep.stems, progress=False)
    return round(res.speed, 1)


def peak_memory_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def run_bench(model: str | None, block: int, threads: int, seconds: float,
              file_seconds: float = 60.0, live: bool = False) -> dict[str, Any]:
    """Everything ``rtsep bench`` reports, as one dict (the ``--json`` keys)."""
    if block < 1 or seconds <= 0 or threads < 1:
        raise ConfigError("--block, --seconds and --threads must be positive")
    sep = load(model, threads=threads, live=True)
    rate = sep.sample_rate
    result: dict[str, Any] = {
        "model": sep.card.name,
        "machine": machine(),
        "threads": threads,
        "algorithmic_latency_samples": sep.latency_samples,
        "algorithmic_latency_ms": round(sep.latency_samples / rate * 1000, 3),
        "latency_terms_samples": sep.latency_terms,
        "seconds": seconds,
    }
    timing = block_timing(sep, block, seconds)
    result.update(timing)
    result["file_speed_x_realtime"] = file_speed(sep, file_seconds) if file_seconds else None
    result["xruns"] = None
    result["measured_roundtrip_ms"] = None
    if live:
        from .bench_live import roundtrip

        result.update(roundtrip(model, block, threads))
    result["peak_memory_mb"] = peak_memory_mb()
    return result


def format_table(r: dict[str, Any]) -> str:
    c = r["block_compute_us"]
    terms = " + ".join(f"{v} ({k})" for k, v in r["latency_terms_samples"].items())
    rows = [
        ("model", r["model"]),
        ("machine", r["machine"]),
        ("algorithmic latency", f"{r['algorithmic_latency_samples']} samples = "
                                f"{r['algorithmic_latency_ms']:.2f} ms  [{terms}]"),
        ("block", f"{r['block']} samples ({r['block_budget_us']:.0f} us), {r['threads']} "
                  f"thread(s), {r['blocks']} blocks of real music"),
        ("block compute (us)", f"p50 {c['p50']:.0f}  p99 {c['p99']:.0f}  max {c['max']:.0f}"),
        ("realtime factor", f"{r['realtime_factor']:.3f} (compute time / audio time)"),
        ("late blocks", f"{r['late_blocks']} of {r['blocks']}"),
        ("file speed", f"{r['file_speed_x_realtime']}x real time (60 s stereo)"
         if r["file_speed_x_realtime"] else "not measured"),
        ("live round trip", f"{r['measured_roundtrip_ms']} ms measured, "
                            f"{r.get('expected_roundtrip_ms')} ms by arithmetic, "
                            f"xruns {r['xruns']}" if r["measured_roundtrip_ms"] is not None
         else "not measured (--live with a JACK server)"),
        ("peak memory", f"{r['peak_memory_mb']} MB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_plot(r: dict[str, Any], path: str | Path) -> Path:
    """Histogram of per-block compute times against the block's deadline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    us = r["_times_us"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(us, bins=100, log=True, color="#4477aa")
    ax.axvline(r["block_budget_us"], color="#cc3311", label="deadline (block duration)")
    for q, style in (("p50", ":"), ("p99", "--")):
        ax.axvline(r["block_compute_us"][q], color="k", ls=style, label=q)
    ax.set_xlabel("process_into time per block (us)")
    ax.set_ylabel("blocks")
    ax.set_title(f"{r['model']}: block {r['block']}, {r['threads']} thread(s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def cmd_bench(args: Any) -> int:
    r = run_bench(args.model, args.block, args.threads, args.seconds,
                  file_seconds=0 if args.no_file else 60.0, live=args.live)
    if args.plot:
        write_plot(r, args.plot)
    if args.json:
        print(json.dumps(public(r), indent=2))
    else:
        print(format_table(r))
    return 0
