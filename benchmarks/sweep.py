"""Sweep `rtsep bench` over live block sizes and TFLite threads; write the README table.

    python benchmarks/sweep.py [-m MODEL] [--seconds 10] [--readme README.md]

Writes benchmarks/results.json and replaces the text between the bench markers in the README.
Run it on a quiet machine: other processes on the same cores show up as late blocks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rtsep.bench import public, run_bench

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def table(rows: list[dict], model: str, machine: str, command: str) -> str:
    lat = rows[0]
    out = [
        f"Model `{model}`: algorithmic latency {lat['algorithmic_latency_samples']} samples = "
        f"{lat['algorithmic_latency_ms']:.2f} ms ({' + '.join(f'{v} {k}' for k, v in lat['latency_terms_samples'].items())}). "  # noqa: E501
        f"Machine: {machine}. Measured {time.strftime('%Y-%m-%d')} with `{command}`.",
        "",
        "| block | threads | budget us | p50 us | p99 us | max us | realtime factor | "
        "late blocks | file x RT | peak MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r["block_compute_us"]
        fs = r["file_speed_x_realtime"]
        out.append(f"| {r['block']} | {r['threads']} | {r['block_budget_us']:.0f} | "
                   f"{c['p50']:.0f} | {c['p99']:.0f} | {c['max']:.0f} | "
                   f"{r['realtime_factor']:.3f} | {r['late_blocks']} / {r['blocks']} | "
                   f"{fs if fs else '-'} | {r['peak_memory_mb']} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("-m", "--model", default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--blocks", default="64,128,256,512")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--readme", type=Path, default=Path(__file__).parents[1] / "README.md")
    args = p.parse_args()
    rows = []
    for threads in map(int, args.threads.split(",")):
        for i, block in enumerate(map(int, args.blocks.split(","))):
            r = run_bench(args.model, block, threads, args.seconds,
                          file_seconds=60.0 if i == 0 else 0)
            rows.append(public(r))
            print(f"block {block} threads {threads}: p99 {r['block_compute_us']['p99']} us, "
                  f"late {r['late_blocks']}", file=sys.stderr)
    out = Path(__file__).parent / "results.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    command = "python benchmarks/sweep.py" + (f" -m {args.model}" if args.model else "")
    text = table(rows, rows[0]["model"], rows[0]["machine"], command)
    readme = args.readme.read_text()
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        args.readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
