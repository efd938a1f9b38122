"""Ship an ensemble of shipped models: write its card, evaluate it through the streaming
engine, measure its live block, and write ``<name>.md``, like ``ship`` does for one model.

    python -m rtsep.models.ship_ensemble --name NAME --members A,B[,C] [--weights 1,1]
        [--shifts 0,256] [--wiener 4096,10]

With ``--wiener N_FFT,MEMORY_SECONDS`` the members' stems go through the streaming Wiener
filter (``rtsep/wiener.py``); then one member is enough.

The card pins its members by sha256 (``member_sha256``): the numbers in it are the numbers of
exactly these members.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtsep.engine import load
from rtsep.ensemble import ENSEMBLE_FORMAT, Ensemble
from rtsep.evaluate import evaluate, format_table, write_json, write_plot
from rtsep.modelcard import ENSEMBLE_SUFFIX, read_card
from rtsep.wiener import WienerFilter

from .ship import SHIPPED, measure_live_block, ship_command, validation_section


def write_ensemble_card(path: Path, card: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(path)


def ensemble_markdown(card: dict, ens: Ensemble, lat: int, table: str, ship_cmd: str) -> str:
    """``lat``: the shipped separator's latency (the ensemble's, plus a Wiener filter's)."""
    rate = ens.sample_rate
    wiener = card.get("wiener")
    filtered = (f"""
The averaged stems then go through the streaming multichannel Wiener filter
(`rtsep/wiener.py`): STFT {wiener['n_fft']}, spatial covariances averaged over the last
{wiener['memory_seconds']:g} s; it adds {wiener['n_fft']} samples of latency and keeps the
stems adding up to the input.
""" if wiener else "")
    rows = "\n".join(
        f"| `{m.card.name}` | {w:.3f} | {s} | {m.latency_samples} samples "
        f"(delayed by {ens.latency_samples - m.latency_samples - s}) | "
        f"`{m.card.sha256[:16]}...` |"
        for m, w, s in zip(ens.members, ens.card.weights, ens.shifts))
    return f"""# {card['name']}

{card.get('description', '')}

An ensemble (`rtsep/ensemble.py`): every member separates the input, each member's stems are
delayed to the slowest member's latency and the stems are averaged with these weights; a
member with a shift hears the input that many samples late (counted in its latency). The
members' own cards (`<member>.md`) say how each was trained.
{filtered}
| member | weight | shift | latency | sha256 |
|---|---:|---:|---|---|
{rows}

- **Stems**: {', '.join(ens.stems)}; {rate} Hz
- **Algorithmic latency**: {lat} samples = {lat / rate * 1000:.1f} ms (the slowest member's{
    ' and the Wiener filter' if wiener else ''})
- **Live block**: {card['live_block']} samples by default: {card['live_block_measured']}

## Validation (through the streaming engine, the samples `rtsep file` writes)

```
{table}
```

Measured with `{card['validation']['command']}`; shipped with `{ship_cmd}`.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--members", required=True, help="comma-separated shipped model names")
    p.add_argument("--weights", default=None, help="comma-separated (default: equal)")
    p.add_argument("--shifts", default=None,
                   help="comma-separated input delays in samples (default: none)")
    p.add_argument("--wiener", default=None, metavar="N_FFT,MEMORY_SECONDS",
                   help="put the Wiener post-filter behind the members (e.g. 4096,10)")
    p.add_argument("--description", default="")
    p.add_argument("--data", default="/work/data/openmsx")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--dest", type=Path, default=SHIPPED)
    p.add_argument("--live-blocks", default="1024,2048,4096")
    p.add_argument("--live-seconds", type=float, default=20.0)
    args = p.parse_args(argv)
    members = args.members.split(",")
    weights = ([float(w) for w in args.weights.split(",")] if args.weights
               else [1.0] * len(members))
    path = args.dest / f"{args.name}{ENSEMBLE_SUFFIX}"
    card = {"format": ENSEMBLE_FORMAT, "name": args.name, "kind": "ensemble",
            "description": args.description, "members": members, "weights": weights,
            **({"shifts": [int(v) for v in args.shifts.split(",")]} if args.shifts else {})}
    if args.wiener:
        n_fft, memory = args.wiener.split(",")
        card["wiener"] = {"n_fft": int(n_fft), "memory_seconds": float(memory)}
    write_ensemble_card(path, card)  # unpinned while it is measured
    sep = load(path)
    ens = sep.inner if isinstance(sep, WienerFilter) else sep
    assert isinstance(ens, Ensemble)
    card["member_sha256"] = [read_card(m.card.path).sha256 for m in ens.members]
    ev = evaluate(path, args.data, max_seconds=args.max_seconds, threads=2)
    ev.command = (f"rtsep eval -m {args.name} --data {args.data}"
                  + (f" --max-seconds {args.max_seconds:g}" if args.max_seconds else ""))
    table = format_table(ev)
    print(table)
    write_json(ev, args.dest / f"{args.name}.eval.json")
    write_plot(ev, args.dest / f"{args.name}.eval.png")
    card["validation"] = validation_section(ev)
    card["live_block"], card["live_block_measured"] = measure_live_block(
        path, args.live_blocks, args.live_seconds)
    write_ensemble_card(path, card)
    load(path)  # the pinned card loads
    ship_cmd = ship_command("rtsep.models.ship_ensemble", argv)
    (args.dest / f"{args.name}.md").write_text(
        ensemble_markdown(card, ens, sep.latency_samples, table, ship_cmd))
    print(f"shipped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
