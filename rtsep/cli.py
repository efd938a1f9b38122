"""The ``rtsep`` command line. Every user-facing failure is one line on stderr and a non-zero
exit: 1 for a failed job, 2 for bad usage, 3 for an internal error (a bug: please report)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from .errors import MissingExtraError, RtsepError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


def _cmd_file(args: argparse.Namespace) -> int:
    from .filemode import run_files

    return run_files(args.songs, args.out, args.model, args.stems, args.format, args.subtype,
                     args.threads, progress=not args.quiet)


def _cmd_models(args: argparse.Namespace) -> int:
    from .modelcard import DEFAULT_MODEL, read_card, shipped_models

    cards = []
    for path in shipped_models():
        try:
            cards.append(read_card(path).raw)
        except RtsepError as e:
            print(f"rtsep: error: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no shipped models found")
    for c in cards:
        default = " (default)" if c["name"] == DEFAULT_MODEL else ""
        sdr = c.get("validation", {}).get("sdr_over_floor_db", {})
        sdr_txt = ", ".join(f"{k} {v:+.1f}" for k, v in sdr.items()) if sdr else "not measured"
        print(f"{c['name']}{default}: variant {c['variant']}, stems {','.join(c['stems'])}, "
              f"{c['sample_rate']} Hz, hop {c['hop']}, context {c['context_frames']} frames, "
              f"lookahead {c['lookahead_frames']}, out_frames {c['out_frames']}")
        if c.get("description"):
            print(f"    {c['description']}")
        print(f"    validation SDR over the constant-gain floor (dB): {sdr_txt}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    try:
        from rtsep.convert.cli import run_convert
    except ImportError as e:
        raise MissingExtraError(f"conversion needs TensorFlow ({e.name} missing): "
                                "pip install 'rtsep[train]'") from None
    return run_convert(args)


def _add_file(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("file", help="separate audio files into stem files")
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files (wav, flac, ogg...)")
    p.add_argument("-o", "--out", default="separated", help="output folder (default ./separated)")
    p.add_argument("-m", "--model", default=None, help="shipped model name or .tflite path")
    p.add_argument("--stems", default=None, help="comma-separated stems to write (default all)")
    p.add_argument("--format", choices=("wav", "flac"), default="wav")
    p.add_argument("--subtype", choices=("PCM_16", "PCM_24", "FLOAT"), default="PCM_16")
    p.add_argument("--threads", type=int, default=2, help="TFLite threads (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_file)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the shipped models and their cards")
    p.add_argument("--json", action="store_true", help="print the full cards as JSON")
    p.set_defaults(func=_cmd_models)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a trained Keras model to TFLite (needs [train])")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("-o", "--out", required=True, metavar="OUT.tflite")
    p.add_argument("--quantize", choices=("none", "float16", "int8"), default="none")
    p.add_argument("--name", default=None, help="model name in the card (default: file stem)")
    p.add_argument("--context-frames", type=int, default=None)
    p.add_argument("--out-frames", type=int, default=None)
    p.add_argument("--lookahead-frames", type=int, default=None)
    p.add_argument("--audio", default=None, help="real audio for the parity check "
                   "(default: the bundled example)")
    p.set_defaults(func=_cmd_convert)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_file, _add_models, _add_convert]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtsep", description="Real-time music source "
                                     "separation (drums, bass, other) with a U-Net on TFLite.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RtsepError as e:
        print(f"rtsep: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("rtsep: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("RTSEP_DEBUG"):
            raise
        print(f"rtsep: internal error: {type(e).__name__}: {e} (please report; set "
              "RTSEP_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
