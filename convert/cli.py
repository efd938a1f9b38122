"""``rtsep convert``: Keras -> TFLite with card and parity check (imports TensorFlow)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from rtsep.errors import ModelError

from . import keras_to_tflite, parity


def example_audio() -> np.ndarray:
    """Mono float32 of the bundled example clip, or a synthetic mixture if it is absent."""
    from importlib import resources

    clip = Path(str(resources.files("rtsep") / "examples" / "example.flac"))
    if clip.is_file():
        data, _ = sf.read(str(clip), dtype="float32", always_2d=True)
        return data.mean(axis=1)
    t = np.arange(44100) / 44100.0
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 55 * t) + 0.2 * np.sin(2 * np.pi * 440 * t)
            + 0.05 * rng.normal(size=t.size)).astype(np.float32)


def run_convert(args: argparse.Namespace) -> int:
    from rtsep.models.card import load_model

    model, card = load_model(args.model)
    out = keras_to_tflite.convert(
        model, card, args.out, name=args.name, quantize=args.quantize,
        context_frames=args.context_frames, out_frames=args.out_frames,
        lookahead_frames=args.lookahead_frames)
    if args.audio:
        audio = sf.read(args.audio, dtype="float32", always_2d=True)[0].mean(axis=1)
    else:
        audio = example_audio()
    report = parity.check(model, out, audio, args.quantize)
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB, card {out.with_suffix('.json').name}")
    print(report.line())
    if not report.ok:
        out.unlink(missing_ok=True)
        out.with_suffix(".json").unlink(missing_ok=True)
        raise ModelError(f"parity check failed: max relative error "
                         f"{max(report.random_error, report.audio_error):.2e} above tolerance "
                         f"{report.tolerance:.0e}; {out.name} removed")
    return 0
