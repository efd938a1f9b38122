"""The TFLite runtime: LiteRT's interpreter (``ai-edge-litert``), ``tflite-runtime`` as a
fallback. Tensors are found through the model card's SignatureDef keys, never by position or by
converter tensor names.

:class:`WindowRunner` holds one interpreter resized to a fixed batch after ``prepare``, so an
invoke allocates nothing: the engine writes the input tensor in place through a short-lived view
(LiteRT refuses to invoke while a view is alive) and reads the output the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ModelError
from .modelcard import ModelCard
from .stdio import quiet_stderr


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ModelError("no TFLite runtime: pip install ai-edge-litert") from None
    return Interpreter


def runtime_version() -> str:
    try:
        from importlib.metadata import version
        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:  # noqa: BLE001 - only informative
        return "unknown"


class WindowRunner:
    """One interpreter for a window model with a fixed batch size.

    Input ``frames[batch, context, 64]``, output ``stems[batch, out_frames, stems, 64]``."""

    def __init__(self, card: ModelCard, model_bytes: bytes, batch: int, threads: int) -> None:
        interp_cls = _interpreter_class()
        try:
            with quiet_stderr():  # LiteRT prints "Created XNNPACK delegate" on every load
                self._interp = interp_cls(model_content=model_bytes, num_threads=threads)
            sigs = self._interp.get_signature_list()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{card.path.name}: not a valid TFLite model "
                             f"({str(e).splitlines()[0]})") from None
        if card.signature_key not in sigs:
            raise ModelError(f"{card.path.name}: signature {card.signature_key!r} not found; "
                             f"the file has {sorted(sigs)}")
        runner = self._interp.get_signature_runner(card.signature_key)
        ins, outs = runner.get_input_details(), runner.get_output_details()
        del runner  # holding it pins the interpreter's buffers
        if card.input_key not in ins or card.output_key not in outs:
            raise ModelError(f"{card.path.name}: expected input {card.input_key!r} and output "
                             f"{card.output_key!r}, found inputs {sorted(ins)} and outputs "
                             f"{sorted(outs)}")
        in_sig = list(ins[card.input_key]["shape_signature"])
        out_sig = list(outs[card.output_key]["shape_signature"])
        want_in = [card.context_frames, card.frame]
        want_out = [card.out_frames, len(card.stems), card.frame]
        if in_sig[1:] != want_in or out_sig[1:] != want_out:
            raise ModelError(f"{card.path.name}: the card says input [batch, {want_in}] and "
                             f"output [batch, {want_out}], the graph has {in_sig} and {out_sig}")
        self._in_index = ins[card.input_key]["index"]
        self._out_index = outs[card.output_key]["index"]
        self.batch = batch
        try:
            self._interp.resize_tensor_input(self._in_index, [batch, *want_in])
            with quiet_stderr():  # the XNNPACK delegate is applied (and announced) here
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{card.path.name}: cannot run with batch {batch} "
                             f"({str(e).splitlines()[0]})") from None
        self.input_view = self._interp.tensor(self._in_index)
        self.output_view = self._interp.tensor(self._out_index)

    def invoke(self) -> None:
        """Run the model on what was written into ``input_view()``. Releases the GIL."""
        self._interp.invoke()

    def run(self, frames: np.ndarray) -> np.ndarray:
        """Convenience (allocates): frames[batch, context, 64] -> copy of the output."""
        self.input_view()[...] = frames
        self._interp.invoke()
        return self.output_view().copy()
