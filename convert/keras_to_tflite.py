"""Keras -> TFLite conversion of a window or stateful model, with its runtime card.

A window model's graph takes ``frames[batch, context, 64]`` (batch is dynamic) and returns
``stems[batch, out_frames, stems, 64]``: the output frames that lie ``lookahead_frames`` before
the end of the window. A stateful model (the ``tcn`` variant) takes the ``out_frames`` new frames
and ``state[batch, size]`` and also returns ``next_state``. Keys are SignatureDef names
(``serving_default``: ``frames`` [+ ``state``] -> ``stems`` [+ ``next_state``]).
Quantisation: ``float16`` (weights stored as fp16; expanded at load on x86: smaller, not faster)
or ``int8`` (dynamic-range int8 weights, float input and output: cuts weight bandwidth).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
from pathlib import Path
from typing import Any

from rtsep.errors import ModelError
from rtsep.modelcard import expected_window, write_card

QUANTIZE = ("none", "float16", "int8")
SIGNATURE = {"key": "serving_default", "input": "frames", "output": "stems"}
STATE_SIGNATURE = {**SIGNATURE, "state_input": "state", "state_output": "next_state"}
#: Variants that stream with state instead of recomputing a window: their module, which has
#: ``build_<variant>(stream_frames=...)``, ``state_size(config)`` and
#: ``receptive_field(config)``.
STATEFUL_VARIANTS = {"tcn": "rtsep.models.tcn", "cunet": "rtsep.models.cunet"}


def is_stateful(train_card: dict[str, Any]) -> bool:
    return train_card["variant"] in STATEFUL_VARIANTS


def stateful_module(variant: str) -> Any:
    import importlib

    return importlib.import_module(STATEFUL_VARIANTS[variant])


def stream_model(model: Any, train_card: dict[str, Any], out_frames: int) -> Any:
    """The streaming twin of a stateful variant, with ``model``'s weights: ``frames[batch,
    out_frames, 64]`` and ``state`` -> ``stems`` and ``next_state``."""
    variant = train_card["variant"]
    build = getattr(stateful_module(variant), f"build_{variant}")
    twin = build(stream_frames=out_frames, **train_card["config"])
    twin.set_weights(model.get_weights())
    return twin


def window_model(model: Any, context_frames: int, out_frames: int, lookahead_frames: int,
                 sliced: bool = True) -> Any:
    """Wrap a full-sequence model as the runtime's window model (dict output ``stems``).

    ``sliced``: compute the layers after the U-Net body (the last transposed convolution, the
    masks, the filterbank decoder) only for the ``out_frames`` frames the window outputs, plus
    the margin the transposed convolution needs, instead of all ``context`` frames. Exactly the
    same output (the parity check compares it with ``sliced=False``) at about half the cost for
    the filterbank variant, whose last layer makes 256 x stems channels per frame."""
    import keras

    from rtsep.models.unet import FRAME, SelectFrames

    frames = keras.Input((context_frames, FRAME), name=SIGNATURE["input"])
    stop = context_frames - lookahead_frames
    start = stop - out_frames
    if sliced and _has_mask_tail(model):
        out = _sliced_tail(model, frames, start, stop)
    else:
        y = model(frames, training=False)
        out = SelectFrames(start, stop, name="select")(y)
    return keras.Model(frames, {SIGNATURE["output"]: out}, name="window")


_TAIL = ("mask", "masks", "apply_mask")
_OPTIONAL_TAIL = ("masks_softmax", "fb_encoder", "fb_decoder", "residual_last")


def _has_mask_tail(model: Any) -> bool:
    names = [layer.name for layer in model.layers]
    known = {"frames", *_TAIL, *_OPTIONAL_TAIL}
    tail = names[names.index("mask"):] if "mask" in names else []
    return all(n in names for n in _TAIL) and all(n in known for n in tail)


def _sliced_tail(model: Any, frames: Any, start: int, stop: int) -> Any:
    """The model's output frames [start, stop) with the tail computed on those frames only."""
    import keras

    from rtsep.models.unet import ApplyMask, ResidualLast, SelectFrames

    names = {layer.name for layer in model.layers}
    mask = model.get_layer("mask")
    outs = [mask.input]
    if "fb_encoder" in names:
        outs.append(model.get_layer("fb_encoder").output)
    body = keras.Model(model.input, outs, name="body")
    res = body(frames, training=False)
    h, feats = (res[0], res[1]) if len(outs) == 2 else (res[0], frames)
    stride, kernel = mask.strides[0], mask.kernel_size[0]
    positions = frames.shape[1] // stride
    j0 = max(0, start // stride - kernel)  # inputs a kernel back reach the first output frame
    m = mask(SelectFrames(j0, positions, name="tail_in")(h))
    off = start - stride * j0
    m = SelectFrames(off, off + stop - start, name="tail_out")(m)
    m = model.get_layer("masks")(m)
    if "masks_softmax" in names:
        m = model.get_layer("masks_softmax")(m)
    y = ApplyMask(name="tail_apply")(m, SelectFrames(start, stop, name="tail_feats")(feats))
    if "fb_decoder" in names:
        y = model.get_layer("fb_decoder")(y)
    if "residual_last" in names:
        y = ResidualLast(name="tail_residual")(SelectFrames(start, stop, name="tail_frames")(
            frames), y)
    return y


def to_tflite(wrapped: Any, quantize: str = "none") -> bytes:
    """Convert a window model to TFLite flatbuffer bytes."""
    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    conv = tf.lite.TFLiteConverter.from_keras_model(wrapped)
    if quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights
    # Keras prints its whole SavedModel signature listing while exporting: keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return conv.convert()


def sums_to_input(train_card: dict[str, Any]) -> bool:
    """True when the architecture makes the stems add up to the input frame."""
    cfg = train_card["config"]
    softmax_seed = train_card["variant"] == "seed" and cfg.get("mask") == "softmax"
    return bool(cfg.get("residual_last", False) or softmax_seed)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy", "rtsep"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def convert(model: Any, train_card: dict[str, Any], out: str | Path, *, name: str | None = None,
            quantize: str = "none", context_frames: int | None = None,
            out_frames: int | None = None, lookahead_frames: int | None = None) -> Path:
    """Convert a trained model to ``out`` (.tflite) and write the runtime card beside it.

    Runtime geometry defaults to the training card's ``runtime`` section."""
    out = Path(out)
    rt = dict(train_card.get("runtime", {}))
    context = context_frames or rt.get("context_frames", 64)
    frames_out = out_frames or rt.get("out_frames", 1)
    lookahead = lookahead_frames if lookahead_frames is not None else rt.get(
        "lookahead_frames", 0)
    state = None
    if is_stateful(train_card):
        module = stateful_module(train_card["variant"])
        built_in = int(train_card["config"].get("lookahead", 0))
        if lookahead_frames is not None and lookahead_frames != built_in:
            raise ValueError(f"this {train_card['variant']} model's lookahead is {built_in} "
                             f"frames (part of the model), not {lookahead_frames}")
        lookahead = built_in
        context = frames_out  # each invoke takes exactly the new frames
        wrapped = stream_model(model, train_card, frames_out)
        cfg = train_card["config"]
        state = {"size": module.state_size(cfg),
                 "receptive_field_frames": module.receptive_field(cfg),
                 "layout": "past inputs of every causal layer, packed"}
    elif train_card["variant"] == "spec":  # inverse STFT for the output frames only
        from rtsep.models import spec

        cfg = train_card["config"]
        context = context_frames or spec.window_frames(cfg, frames_out, lookahead)
        try:
            wrapped = spec.window_twin(model, cfg, context, frames_out, lookahead)
        except ValueError as e:
            raise ModelError(str(e)) from None
    else:
        wrapped = window_model(model, context, frames_out, lookahead)
    data = to_tflite(wrapped, quantize)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    hop = int(train_card["hop"])
    fields = {
        "name": name or out.stem,
        "variant": train_card["variant"],
        "kind": "stateful" if state else "window",
        "stems": list(train_card["stems"]),
        "sample_rate": int(train_card["sample_rate"]),
        "frame": 64,
        "hop": hop,
        "window": expected_window(hop),
        "context_frames": context,
        "out_frames": frames_out,
        "lookahead_frames": lookahead,
        "state": state,
        "signature": STATE_SIGNATURE if state else SIGNATURE,
        "quantize": quantize,
        "sums_to_input": sums_to_input(train_card),
        "architecture": {"variant": train_card["variant"], "config": train_card["config"]},
        "description": train_card.get("description", ""),
        "training": train_card.get("training", {}),
        "validation": train_card.get("validation", {}),
        "versions": versions(),
    }
    write_card(out, fields)
    return out
