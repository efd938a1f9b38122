"""Parity of a converted TFLite model against its Keras source.

Run after every conversion on fresh random input and on real audio, with batch sizes other than
the one the converter traced (1), through the runtime's own :class:`ModelRunner`. The reference
is always the trained full-sequence Keras model, so a stateful model's streaming is checked
too. Errors are
relative to the largest reference output, so a tolerance means the same for any signal level.
Tolerances are stated per quantisation; above them the conversion fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtsep.framing import frame_signal
from rtsep.modelcard import ModelCard, read_card
from rtsep.runtime import ModelRunner

#: Max relative error (max |tflite - keras| / max |keras|) accepted per quantisation.
TOLERANCE = {"none": 1e-4, "float16": 1e-3, "int8": 3e-2}


@dataclass(frozen=True)
class ParityReport:
    quantize: str
    tolerance: float
    random_error: float
    audio_error: float

    @property
    def ok(self) -> bool:
        return max(self.random_error, self.audio_error) <= self.tolerance

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"parity ({self.quantize}): max relative error random {self.random_error:.2e}, "
                f"audio {self.audio_error:.2e} (tolerance {self.tolerance:.0e}) {verdict}")


def audio_windows(audio: np.ndarray, card: ModelCard, count: int,
                  length: int | None = None) -> np.ndarray:
    """``count`` runs of ``length`` frames (default: one model window) cut from a mono signal:
    float32[count, length, 64]."""
    frames = frame_signal(audio.astype(np.float32), card.hop, card.frame)
    c = length or card.context_frames
    if len(frames) < c:
        frames = np.concatenate([frames, np.zeros((c - len(frames), card.frame), np.float32)])
    starts = np.linspace(0, len(frames) - c, count).astype(int)
    return np.stack([frames[s:s + c] for s in starts])


def _relative_error(runner_out: np.ndarray, ref: np.ndarray) -> float:
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(runner_out - ref).max()) / scale


def _window_errors(model: Any, card: ModelCard, data: bytes, inputs: list[np.ndarray]
                   ) -> list[float]:
    """Window kind: each window through the TFLite graph against the unsliced Keras window."""
    from .keras_to_tflite import window_model

    wrapped = window_model(model, card.context_frames, card.out_frames, card.lookahead_frames,
                           sliced=False)
    errors = []
    for x in inputs:
        got = ModelRunner(card, data, batch=len(x), threads=1).run(x)
        errors.append(_relative_error(got, np.asarray(wrapped(x, training=False)["stems"])))
    return errors


def _stream_errors(model: Any, card: ModelCard, data: bytes, inputs: list[np.ndarray]
                   ) -> list[float]:
    """Stateful kind: a whole sequence streamed F frames per invoke (state carried by the
    runner) against the Keras full-sequence model: checks the conversion and the streaming."""
    f = card.out_frames
    errors = []
    for x in inputs:
        runner = ModelRunner(card, data, batch=len(x), threads=1)
        got = np.concatenate([runner.run(x[:, k:k + f]) for k in range(0, x.shape[1], f)], 1)
        errors.append(_relative_error(got, np.asarray(model(x, training=False))))
    return errors


def check(model: Any, tflite: str | Path, audio: np.ndarray, quantize: str,
          seed: int = 0) -> ParityReport:
    """Compare the Keras full-sequence ``model`` with the .tflite on random input (batch 3)
    and on ``audio`` (mono float32, batch 5): window by window for a window model, as
    streamed sequences (several hundred frames) for a stateful one."""
    card = read_card(tflite)
    data = Path(tflite).read_bytes()
    rng = np.random.default_rng(seed)
    if card.stateful:
        length = 48 * card.out_frames
        inputs = [rng.normal(0.0, 0.2, (3, length, card.frame)).astype(np.float32),
                  audio_windows(audio, card, 5, length)]
        errors = _stream_errors(model, card, data, inputs)
    else:
        inputs = [rng.normal(0.0, 0.2, (3, card.context_frames, card.frame)).astype(np.float32),
                  audio_windows(audio, card, 5)]
        errors = _window_errors(model, card, data, inputs)
    return ParityReport(quantize, TOLERANCE[quantize], errors[0], errors[1])
