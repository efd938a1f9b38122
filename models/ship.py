"""Ship a trained run: convert, check parity, evaluate through the streaming engine, write the
card (JSON beside the .tflite, and a human-readable ``<name>.md``) into ``models/shipped/``.

    python -m rtsep.models.ship RUN_DIR --name NAME [--out-frames F] [--lookahead-frames L]

Every number in the card is measured here, on the validation songs, with the command recorded;
``live_block`` (the default block of ``rtsep live``) is the smallest of ``--live-blocks`` whose
real-time-paced run (``rtsep bench``'s timing) had no late block, with every candidate's count.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from rtsep.convert.cli import example_audio
from rtsep.convert.keras_to_tflite import convert
from rtsep.convert.parity import check
from rtsep.errors import ModelError
from rtsep.evaluate import evaluate, format_table, write_json, write_plot
from rtsep.framing import latency_terms
from rtsep.modelcard import model_name, read_card, write_card

from .card import load_card, load_model

SHIPPED = Path(__file__).resolve().parent / "shipped"


#: How the card names each --quantize choice's weights.
WEIGHTS = {"none": "float32", "float16": "float16", "int8": "int8 (dynamic range)"}


def training_chain(training: dict) -> list[dict]:
    """This run's training section and those of the runs it started from (``--init``), newest
    first, so the card can state the whole cost. Older runs recorded only the path."""
    chain = [training]
    source = training.get("init")
    while source:
        if isinstance(source, str):
            try:
                source = load_card(source).get("training", {})
            except ModelError:  # a moved run: the cost is unknown, say so
                chain.append({"model": source, "cpu_hours": None})
                break
        chain.append(source)
        source = source.get("init")
    return chain


def cost_line(training: dict) -> str:
    """'N epochs, S steps, H hours ...' with the hours of every run it started from."""
    chain = training_chain(training)
    text = (f"{training.get('epochs')} epochs, {training.get('steps')} steps, "
            f"{training.get('cpu_hours')} hours of training on a 2-core machine (TensorFlow "
            "on 1-2 threads, shared with other jobs)")
    if len(chain) == 1:
        return text
    hours = [c.get("cpu_hours") for c in chain]
    earlier = "; ".join(f"{c.get('epochs')} epochs, {c.get('cpu_hours')} h"
                        + (f" (`{c['command']}`)" if c.get("command") else "")
                        for c in chain[1:])
    total = (f"{sum(hours):.2f} hours in all" if None not in hours
             else "the whole cost is unknown (a source run's card is missing)")
    return f"{text}, on top of the run(s) it started from: {earlier}; {total}"


def training_commands(training: dict) -> str:
    """The command, or for a resumed run every start with the epoch it began at."""
    phases = training.get("phases")
    if not phases:
        return f"`{training.get('command')}`"
    return "; ".join(f"from epoch {epoch + 1}: `{cmd}`" for epoch, cmd in phases)


def card_markdown(card: dict, table: str, eval_cmd: str, ship_cmd: str) -> str:
    t = card["training"]
    lat = card["latency_samples"]
    if card["kind"] == "stateful":
        st = card["state"]
        shape = (f"stateful model (causal; receptive field {st['receptive_field_frames']} "
                 f"frames, {st['size']} floats of state per channel), "
                 f"{card['out_frames']} new frames per invoke")
    else:
        shape = (f"window model with {card['context_frames']} frames of context,\n  "
                 f"{card['out_frames']} output frames per invoke, {card['lookahead_frames']} "
                 "frames of lookahead")
    quantize = card.get("quantize", "none")
    weights = WEIGHTS.get(quantize, quantize)
    live = card.get("live_block_measured")
    live_line = (f"\n- **Live block**: {card['live_block']} samples by default: {live}"
                 if live else "")
    return f"""# {card['name']}

{card.get('description', '')}

- **Variant**: `{card['variant']}`, config `{json.dumps(card['architecture']['config'])}`
- **Stems**: {', '.join(card['stems'])}; {card['sample_rate']} Hz; frames of 64 at hop
  {card['hop']}; {shape}
- **Algorithmic latency**: {lat} samples = {lat / card['sample_rate'] * 1000:.1f} ms
  (63 + lookahead x hop + (out_frames - 1) x hop){live_line}
- **Stems add up to the input**: {card['sums_to_input']}
- **Training data**: `{t.get('data')}` ({t.get('train_songs')} training song versions; validation
  songs {', '.join(t.get('valid_songs', []))}; see models/data/DATA.md)
- **Recipe**: {json.dumps(t.get('recipe', {}))}
- **Cost**: {cost_line(t)}
- **Training command**: {training_commands(t)}
- **File**: {weights} weights, sha256 `{card['sha256']}`

## Validation (through the streaming engine, the samples `rtsep file` writes)

```
{table}
```

Measured with `{eval_cmd}`; shipped with `{ship_cmd}`.
"""


def latest_checkpoint(run: Path, model: Any, tcard: dict) -> tuple[Any, dict]:
    """The run's last checkpoint in the best model's architecture, with its epoch in the card."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run / "ckpt"))
    if latest is None:
        raise SystemExit(f"no checkpoint in {run / 'ckpt'}")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    state = json.loads((run / "state.json").read_text())
    epoch = int(latest.rsplit("-", 1)[1])
    steps = sum(1 for h in state["history"] if h["epoch"] <= epoch) * (
        state["steps"] // max(1, state["epoch"]))
    training = {**tcard["training"], "epochs": epoch, "steps": steps,
                "cpu_hours": round(state["seconds"] / 3600, 2),
                "lr_schedule": state.get("lr_schedule"), "checkpoint": "latest"}
    return model, {**tcard, "training": training}


def validation_section(ev: Any) -> dict:
    """What a card keeps of an evaluation: its command, songs, and SDR tables."""
    ej = ev.to_json()
    return {"command": ev.command, "songs": list(ej["songs"]), "sdr_db": ej["sdr_db"],
            "sdr_over_floor_db": ej["sdr_over_floor_db"], "means": ej["means"]}


def ship_command(module: str, argv: list[str] | None) -> str:
    """The command that shipped a card, quoted so that it pastes into a shell."""
    return f"python -m {module} " + shlex.join(argv or sys.argv[1:])


def measure_live_block(tflite: Path, live_blocks: str, seconds: float) -> tuple[int, str]:
    """The smallest block of ``live_blocks`` (``--live-blocks``: comma-separated) with no late
    block when paced at real time (stereo, 1 thread), and the measurement as one line for the
    card."""
    from rtsep.bench import block_timing, machine
    from rtsep.engine import load

    sep = load(tflite)
    blocks = [int(b) for b in live_blocks.split(",")]
    parts, chosen = [], None
    for block in sorted(blocks):
        r = block_timing(sep, block, seconds)
        parts.append(f"{block}: {r['late_blocks']} late of {r['blocks']} (p99 "
                     f"{r['block_compute_us']['p99']:.0f} us of {r['block_budget_us']:.0f})")
        if chosen is None and r["late_blocks"] == 0:
            chosen = block
    if chosen is None:
        chosen = max(blocks)
    line = (f"`rtsep bench -m {model_name(tflite)} --block B --seconds {seconds:g} --no-file` "
            f"(paced at real time, stereo, 1 thread, {machine()}): " + "; ".join(parts))
    return chosen, line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtsep.models.ship")
    p.add_argument("run", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--data", default="/work/data/openmsx")
    p.add_argument("--out-frames", type=int, default=None)
    p.add_argument("--lookahead-frames", type=int, default=None)
    p.add_argument("--quantize", default="none")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--dest", type=Path, default=SHIPPED)
    p.add_argument("--live-blocks", default="64,128,256",
                   help="candidate live blocks to measure (comma-separated)")
    p.add_argument("--live-seconds", type=float, default=20.0)
    p.add_argument("--latest", action="store_true",
                   help="ship the last epoch (last.keras, or the last checkpoint) instead of "
                        "the best validation-loss epoch")
    args = p.parse_args(argv)
    model, tcard = load_model(args.run / "model.keras")
    if args.latest and (args.run / "last.keras").is_file():
        model, tcard = load_model(args.run / "last.keras")
    elif args.latest:
        model, tcard = latest_checkpoint(args.run, model, tcard)
    if args.description:
        tcard["description"] = args.description
    args.dest.mkdir(parents=True, exist_ok=True)
    out = convert(model, tcard, args.dest / f"{args.name}.tflite", name=args.name,
                  quantize=args.quantize, out_frames=args.out_frames,
                  lookahead_frames=args.lookahead_frames)
    rc = read_card(out)
    report = check(model, out, example_audio(), args.quantize)
    print(report.line())
    if not report.ok:
        return 1
    ev = evaluate(out, args.data, max_seconds=args.max_seconds, threads=2)
    eval_cmd = (f"rtsep eval -m {args.name} --data {args.data}"
                + (f" --max-seconds {args.max_seconds:g}" if args.max_seconds else ""))
    ev.command = eval_cmd
    table = format_table(ev)
    print(table)
    report_dir = args.run / f"eval-{args.name}"
    report_dir.mkdir(exist_ok=True)
    write_json(ev, report_dir / "eval.json")
    write_plot(ev, report_dir / "eval.png")
    shutil.copy(report_dir / "eval.png", args.dest / f"{args.name}.eval.png")
    shutil.copy(args.run / "loss.png", args.dest / f"{args.name}.loss.png")
    raw = dict(rc.raw)
    raw["validation"] = {**validation_section(ev), "parity": report.line()}
    raw["live_block"], raw["live_block_measured"] = measure_live_block(
        out, args.live_blocks, args.live_seconds)
    raw.pop("sha256")
    raw.pop("format")
    write_card(out, raw)
    card = json.loads(out.with_suffix(".json").read_text())
    card["latency_samples"] = sum(latency_terms(rc.hop, rc.lookahead_frames, rc.out_frames,
                                                rc.frame).values())
    ship_cmd = ship_command("rtsep.models.ship", argv)
    (args.dest / f"{args.name}.md").write_text(card_markdown(card, table, eval_cmd, ship_cmd))
    print(f"shipped {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
