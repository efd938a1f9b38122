"""The TFLite runtime: LiteRT's interpreter (``ai-edge-litert``), ``tflite-runtime`` as a
fallback. Tensors are found through the model card's SignatureDef keys, never by position or by
converter tensor names.

:class:`ModelRunner` holds one interpreter resized to a fixed batch after ``prepare``, so an
invoke allocates nothing: the engine writes the input tensor in place through a short-lived view
(LiteRT refuses to invoke while a view is alive) and reads the output the same way. A stateful
model's state (one packed tensor per batch row) stays inside the runner: every invoke's next
state is copied into the state input for the following one; ``reset_state`` zeroes it.
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


class ModelRunner:
    """One interpreter for a model of either kind, with a fixed batch size.

    Input ``frames[batch, context, 64]``, output ``stems[batch, out_frames, stems, 64]``;
    stateful models also ``state[batch, size]`` in and the next state out."""

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
        want_ins = {card.input_key: [card.context_frames, card.frame]}
        want_outs = {card.output_key: [card.out_frames, len(card.stems), card.frame]}
        if card.stateful:
            want_ins[card.state_input_key] = [card.state_size]
            want_outs[card.state_output_key] = [card.state_size]
        if set(want_ins) != set(ins) or not set(want_outs) <= set(outs):
            raise ModelError(f"{card.path.name}: the card says inputs {sorted(want_ins)} and "
                             f"outputs {sorted(want_outs)}, the graph has inputs {sorted(ins)} "
                             f"and outputs {sorted(outs)}")
        for details, want in ((ins, want_ins), (outs, want_outs)):
            for key, shape in want.items():
                found = [int(v) for v in details[key]["shape_signature"]]
                if found[1:] != shape:
                    raise ModelError(f"{card.path.name}: the card says {key} is [batch, "
                                     f"{', '.join(map(str, shape))}], the graph has {found}")
        self.batch = batch
        self.stateful = card.stateful
        try:
            for key, shape in want_ins.items():
                self._interp.resize_tensor_input(ins[key]["index"], [batch, *shape])
            with quiet_stderr():  # the XNNPACK delegate is applied (and announced) here
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{card.path.name}: cannot run with batch {batch} "
                             f"({str(e).splitlines()[0]})") from None
        self.input_view = self._interp.tensor(ins[card.input_key]["index"])
        self.output_view = self._interp.tensor(outs[card.output_key]["index"])
        if self.stateful:
            self._state_in = self._interp.tensor(ins[card.state_input_key]["index"])
            self._state_out = self._interp.tensor(outs[card.state_output_key]["index"])
            self.reset_state()

    def invoke(self) -> None:
        """Run the model on what was written into ``input_view()``; a stateful model's next
        state becomes its state. Releases the GIL."""
        self._interp.invoke()
        if self.stateful:
            self._state_in()[...] = self._state_out()

    def reset_state(self) -> None:
        """Zero the state: the next invoke starts a new stream (no-op for window models)."""
        if self.stateful:
            self._state_in()[...] = 0.0

    def run(self, frames: np.ndarray) -> np.ndarray:
        """Convenience (allocates): frames[batch, context, 64] -> copy of the output."""
        self.input_view()[...] = frames
        self.invoke()
        return self.output_view().copy()
