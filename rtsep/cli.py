"""The ``rtsep`` command line. Every user-facing failure is one line on stderr and a non-zero
exit: 1 for a failed job, 2 for bad usage, 3 for an internal error (a bug: please report)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from .errors import ConfigError, MissingExtraError, RtsepError
from .modelcard import DEFAULT_MODEL, LIVE_DEFAULT_MODEL

EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


def _cmd_file(args: argparse.Namespace) -> int:
    from .filemode import run_files

    return run_files(args.songs, args.out, args.model, args.stems, args.format, args.subtype,
                     args.threads, progress=not args.quiet)


def _cmd_models(args: argparse.Namespace) -> int:
    from .ensemble import read_ensemble_card
    from .framing import latency_terms
    from .modelcard import read_card, shipped_ensembles, shipped_models
    from .wiener import DEFAULTS as WIENER

    cards = []
    for path in shipped_models() + shipped_ensembles():
        try:
            cards.append((read_ensemble_card if path.name.endswith(".ensemble.json")
                          else read_card)(path).raw)
        except RtsepError as e:
            print(f"rtsep: error: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no shipped models found")
    for c in cards:
        default = {DEFAULT_MODEL: " (default)", LIVE_DEFAULT_MODEL: " (default for live and "
                   "bench)"}.get(c["name"], "")
        sdr = c.get("validation", {}).get("sdr_over_floor_db", {})
        sdr_txt = ", ".join(f"{k} {v:+.1f}" for k, v in sdr.items()) if sdr else "not measured"
        if "members" in c:  # an ensemble card
            weights = c.get("weights", [1] * len(c["members"]))
            wiener = c.get("wiener")
            print(f"{c.get('name')}{default}: ensemble of " + ", ".join(
                f"{m} (weight {w:g})" for m, w in zip(c["members"], weights))
                + (f", then a Wiener filter (STFT {wiener.get('n_fft', WIENER['n_fft'])})"
                   if wiener else ""))
        else:
            if c["kind"] == "stateful":
                past = f"stateful, past {c['state']['receptive_field_frames']} frames"
            else:
                past = f"context {c['context_frames']} frames"
            lat = sum(latency_terms(c["hop"], c["lookahead_frames"], c["out_frames"],
                                    c["frame"]).values())
            print(f"{c['name']}{default}: variant {c['variant']}, stems "
                  f"{','.join(c['stems'])}, {c['sample_rate']} Hz, hop {c['hop']}, {past}, "
                  f"lookahead {c['lookahead_frames']}, out_frames {c['out_frames']}, latency "
                  f"{lat} samples")
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


def _needs_tf(exc: ImportError) -> MissingExtraError:
    return MissingExtraError(f"this command needs the training extra ({exc.name} missing): "
                             "pip install 'rtsep[train]'")


def _unavailable(parser: argparse.ArgumentParser, exc: ImportError) -> None:
    """The command exists but says which extra it needs when run (argparse stays usable)."""
    parser.set_defaults(func=lambda a: (_ for _ in ()).throw(_needs_tf(exc)))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a U-Net variant (needs [train])")
    try:
        from rtsep.models.train import add_train_arguments
    except ImportError as e:
        _unavailable(p, e)
        return
    add_train_arguments(p)

    def run(args: argparse.Namespace) -> int:
        try:
            from rtsep.models.train import run_train
        except ImportError as e:
            raise _needs_tf(e) from None
        return run_train(args)

    p.set_defaults(func=run)


def _add_data_action(dsub: argparse._SubParsersAction, name: str, help: str, module: str,
                     add_arguments: str, run: str) -> None:
    """``rtsep data NAME`` from ``rtsep.models.data.MODULE``'s options and runner, or, when
    the module cannot be imported, an action that says which extra it needs."""
    p = dsub.add_parser(name, help=help)
    try:
        mod = importlib.import_module(f"rtsep.models.data.{module}")
    except ImportError as e:
        _unavailable(p, e)
        return
    getattr(mod, add_arguments)(p)
    p.set_defaults(func=getattr(mod, run))


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data: render stems from General MIDI")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _add_data_action(dsub, "compose", "write new General MIDI songs (procedural, seeded)",
                     "compose", "add_compose_arguments", "run_compose")
    _add_data_action(dsub, "wad-music", "extract the General MIDI music of Doom WADs (Freedoom)",
                     "wad", "add_wad_arguments", "run_wad_music")
    r = dsub.add_parser("render", help="render per-stem audio with fluidsynth")
    try:
        from rtsep.models.data.render import add_render_arguments
    except ImportError as e:
        _unavailable(r, e)
        return
    add_render_arguments(r)

    def run(args: argparse.Namespace) -> int:
        from rtsep.models.data.render import RenderError, run_render

        try:
            return run_render(args)
        except RenderError as e:
            raise ConfigError(str(e)) from None

    r.set_defaults(func=run)


def _add_file(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("file", help="separate audio files into stem files")
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files (wav, flac, ogg...)")
    p.add_argument("-o", "--out", default="separated", help="output folder (default ./separated)")
    p.add_argument("-m", "--model", default=None,
                   help="shipped model or ensemble name, a .tflite path or an ensemble card "
                   f"(default: {DEFAULT_MODEL}, the best separation)")
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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    def _cmd_eval(args: argparse.Namespace) -> int:
        from .evaluate import run_eval

        return run_eval(args)

    p = sub.add_parser("eval", help="SDR per stem on held-out songs, beside the constant-gain "
                       "floor, the mixture and an oracle mask")
    p.add_argument("-m", "--model", default=None,
                   help="shipped model or ensemble name, a .tflite path or an ensemble card "
                   f"(default: {DEFAULT_MODEL})")
    p.add_argument("--data", required=True, metavar="DIR|musdb:PATH",
                   help="rendered data folder (rtsep data render) or musdb:PATH (MUSDB18-HQ)")
    p.add_argument("--subset", choices=("valid", "test", "train"), default=None,
                   help="default: valid for rendered data, test for musdb")
    p.add_argument("--songs", default=None, help="comma-separated song names (default all)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write all results as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="write bars per stem and an excerpt's spectrograms (needs matplotlib)")
    p.add_argument("--bss", action="store_true",
                   help="also BSSEval v4 SDR of the model (needs museval; minutes per song)")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="only the first S seconds of every song (quick runs)")
    p.add_argument("--threads", type=int, default=2, help="TFLite threads (default 2)")
    p.add_argument("--oracle-fft", type=int, default=2048, metavar="N",
                   help="STFT size of the oracle mask, hop N/4 (default 2048; 64 gives the "
                        "ceiling of a mask at the models' 64-sample frames)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)


def _add_live(sub: argparse._SubParsersAction) -> None:
    def _cmd_live(args: argparse.Namespace) -> int:
        from .live import LiveOptions, run_live

        return run_live(LiveOptions(
            inp=args.inp, out=args.out, model=args.model, solo=args.solo, mute=args.mute,
            gains=args.gain, record=args.record, duration=args.duration, block=args.block,
            latency=args.latency, verbose=args.verbose))

    p = sub.add_parser("live", help="separate live audio (or a file played as if live) and "
                       "play a remix of the stems")
    p.add_argument("--in", dest="inp", default="mic", metavar="DEVICE|FILE",
                   help="mic (default input), a device number or name substring, or an audio "
                   "file played as if live (default: mic)")
    p.add_argument("--out", default="speakers", metavar="DEVICE",
                   help="speakers (default output), a device number or name substring")
    p.add_argument("-m", "--model", default=None,
                   help="shipped model or ensemble name, a .tflite path or an ensemble card "
                   f"(default: {LIVE_DEFAULT_MODEL}, the lowest latency)")
    p.add_argument("--solo", action="append", default=[], metavar="STEM",
                   help="play only this stem (repeatable)")
    p.add_argument("--mute", action="append", default=[], metavar="STEM",
                   help="silence this stem (repeatable)")
    p.add_argument("--gain", action="append", default=[], metavar="STEM=DB",
                   help="stem gain in dB, e.g. bass=-6 (repeatable)")
    p.add_argument("--record", default=None, metavar="DIR",
                   help="also write input.wav and one float WAV per stem to DIR")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: end of the file, or q / Ctrl-C)")
    p.add_argument("--block", type=int, default=None, metavar="N",
                   help="frames per audio callback (default: the model card's live_block, "
                   "measured; else 64). On JACK, run the server at this period (-p N)")
    p.add_argument("--latency", default="low", metavar="low|high|SECONDS",
                   help="device buffering asked of PortAudio (default low)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="latency terms, device latencies and callback timing")
    p.set_defaults(func=_cmd_live)


def _add_devices(sub: argparse._SubParsersAction) -> None:
    def _cmd_devices(args: argparse.Namespace) -> int:
        from .devices import describe

        print(describe())
        return 0

    p = sub.add_parser("devices", help="list audio devices and host APIs (for rtsep live)")
    p.set_defaults(func=_cmd_devices)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    def _cmd_bench(args: argparse.Namespace) -> int:
        from .bench import cmd_bench

        return cmd_bench(args)

    p = sub.add_parser("bench", help="measure latency and CPU cost on this machine")
    p.add_argument("-m", "--model", default=None,
                   help="shipped model or ensemble name, a .tflite path or an ensemble card "
                   f"(default: {LIVE_DEFAULT_MODEL}, the live default)")
    p.add_argument("--block", type=int, default=64, help="live block size (default 64)")
    p.add_argument("--threads", type=int, default=1, help="TFLite threads (default 1)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of music to time")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="histogram of per-block compute times against the deadline")
    p.add_argument("--no-file", action="store_true", help="skip the 60 s file-mode run")
    p.add_argument("--live", action="store_true",
                   help="also measure a round trip through a running JACK server")
    p.set_defaults(func=_cmd_bench)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_file, _add_models, _add_convert, _add_train, _add_data,
    _add_eval, _add_live, _add_devices, _add_bench]


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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a card records as its command
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
