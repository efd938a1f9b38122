"""A causal, streaming U-Net behind the learned filterbank, with a dilated TCN at its bottom.

Why: the window U-Net (``fb``) recomputes its whole 64-frame window (47 ms) on every invoke, so
its context is short and most of its run-time work is repeated; the ``tcn`` streams and sees
0.74 s, but runs every layer at the full frame rate, which makes it about seven times dearer
to train per frame on these CPUs. This network keeps the U-Net's halving levels (cheap per
frame) but makes every layer causal, so it streams with state like the ``tcn``:

- encoder level i: a causal Conv1D (kernel k, stride 2) + BatchNorm + LeakyReLU; its output j
  reads level inputs ``2j - (k - 2) .. 2j + 1``, so it is complete when input ``2j + 1`` is;
- bottom: residual blocks (1x1, PReLU, LayerNorm, causal depthwise conv dilated 1, 2, 4, ...,
  PReLU, LayerNorm, 1x1) at 1/2**L of the frame rate: long context for little work (5
  dilations, kernel 3, 4 levels: 63 steps of 16 frames; 1139 frames = 0.83 s in all at hop
  32 with the other layers). Training excerpts must be longer than that (``rtsep train``
  refuses shorter ones): a tap that never sees data in training keeps its initial weights
  and adds noise at run time;
- decoder: each level repeats the coarser frames twice and delays them by one frame (coarse
  frame j then serves frames 2j + 1 and 2j + 2, never one before its last input), concatenates
  the encoder's output of that level and applies a causal Conv1D + ReLU; the full-rate masks
  come from the upsampled features and the filterbank features (a full-rate skip).

Every frame of a training excerpt is thus computed as it is at run time: the loss covers all
of them. The streaming twin (``stream_frames=F``, F a multiple of 2**L so every level gets
whole frames) takes F new frames and the packed state (every causal layer's past inputs) and
returns the stems and the next state; from a zero state it equals the full-sequence model on
a sequence that starts with the stream (strided levels make the phase matter: the engine's
invokes start at frame 0).
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
from keras import layers

from .tcn import _Past
from .unet import FRAME, ApplyMask, ResidualLast, _masks, levels_multiple


def _geometry(config: dict[str, Any]) -> dict[str, Any]:
    """The config keys that shape state and timing, with ``build_cunet``'s defaults."""
    defaults = inspect.signature(build_cunet).parameters
    keys = ("filters", "kernel", "dilations", "tcn_kernel", "hidden", "analysis_frames")
    g = {k: config.get(k, defaults[k].default) for k in keys}
    g["filters"] = tuple(int(f) for f in g["filters"])
    return g


def frames_multiple(config: dict[str, Any]) -> int:
    """Sequence lengths and streamed blocks must be multiples of this (one frame per level)."""
    return levels_multiple(_geometry(config)["filters"])


def receptive_field(config: dict[str, Any]) -> int:
    """Frames (including the current one) that one output frame can depend on: the deepest
    path, analysis window + encoder levels + bottom + decoder levels, each at its own rate."""
    g = _geometry(config)
    k, levels = int(g["kernel"]), len(g["filters"])
    past = int(g["analysis_frames"]) - 1
    past += sum((k - 1) * 2 ** i for i in range(levels))  # strided encoder convolutions
    past += (int(g["tcn_kernel"]) - 1) * (2 ** int(g["dilations"]) - 1) * 2 ** levels
    past += sum(2 ** i for i in range(levels))  # the one-frame delay of every upsampling
    past += sum((k - 1) * 2 ** i for i in range(1, levels))  # decoder convolutions
    return past + 1


def build_cunet(stems: int = 3, context_frames: int | None = None, basis: int = 256,
                analysis_frames: int = 16, filters: tuple[int, ...] = (64, 128, 256, 512),
                kernel: int = 5, dilations: int = 5, tcn_kernel: int = 3, hidden: int = 256,
                mask: str = "sigmoid", residual_last: bool = True,
                stream_frames: int | None = None) -> keras.Model:
    """Full-sequence model ``frames[batch, T, 64] -> stems[batch, T, S, 64]`` (T a multiple of
    2**len(filters)); ``stream_frames=F``: the streaming twin with the same layers in the same
    order, ``frames[batch, F, 64], state[batch, size] -> {stems, next_state}``."""
    filters = tuple(int(f) for f in filters)
    multiple = levels_multiple(filters)
    if stream_frames is not None and stream_frames % multiple:
        raise ValueError(f"a cunet with {len(filters)} levels streams blocks of a multiple of "
                         f"{multiple} frames, not {stream_frames}")
    if kernel < 2:
        raise ValueError(f"kernel must be at least 2, got {kernel}")
    frames = keras.Input((stream_frames or context_frames, FRAME), name="frames")
    size = _state_size(basis, analysis_frames, filters, kernel, dilations, tcn_kernel, hidden)
    state_in = keras.Input((size,), name="state") if stream_frames else None
    past = _Past(state_in)

    def causal(x: Any, frames_back: int, name: str) -> Any:
        return past(x, frames_back, int(x.shape[-1]), name) if frames_back else x

    def upsample(x: Any, name: str) -> Any:
        """Each frame twice, one frame late: coarse frame j serves frames 2j + 1, 2j + 2."""
        x = layers.UpSampling1D(2, name=f"{name}_repeat")(x)
        x = causal(x, 1, f"{name}_delay")
        return layers.Cropping1D((0, 1), name=f"{name}_crop")(x)

    if analysis_frames > 1:
        enc = layers.Conv1D(basis, analysis_frames, padding="valid", activation="relu",
                            name="fb_encoder")(causal(frames, analysis_frames - 1, "fb"))
    else:
        enc = layers.Dense(basis, activation="relu", name="fb_encoder")(frames)
    x, skips = enc, []
    for i, f in enumerate(filters):
        x = layers.Conv1D(f, kernel, strides=2, padding="valid",
                          name=f"enc{i}_conv")(causal(x, kernel - 2, f"enc{i}"))
        x = layers.BatchNormalization(name=f"enc{i}_bn")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"enc{i}_act")(x)
        skips.append(x)
    for j in range(dilations):
        d = 2 ** j
        y = layers.Dense(hidden, name=f"tcn{j}_in")(x)
        y = layers.PReLU(shared_axes=[1], name=f"tcn{j}_act1")(y)
        y = layers.LayerNormalization(name=f"tcn{j}_norm1")(y)
        y = layers.DepthwiseConv1D(tcn_kernel, dilation_rate=d, padding="valid",
                                   name=f"tcn{j}_dconv")(causal(y, (tcn_kernel - 1) * d,
                                                                f"tcn{j}"))
        y = layers.PReLU(shared_axes=[1], name=f"tcn{j}_act2")(y)
        y = layers.LayerNormalization(name=f"tcn{j}_norm2")(y)
        y = layers.Dense(filters[-1], name=f"tcn{j}_out")(y)
        x = layers.Add(name=f"tcn{j}_add")([x, y])
    for i in reversed(range(len(filters) - 1)):
        x = upsample(x, f"dec{i}_up")
        x = layers.Concatenate(name=f"dec{i}_skip")([x, skips[i]])
        x = layers.Conv1D(filters[i], kernel, padding="valid", activation="relu",
                          name=f"dec{i}_conv")(causal(x, kernel - 1, f"dec{i}"))
    x = upsample(x, "mask_up")
    x = layers.Concatenate(name="mask_skip")([x, enc])
    act = "sigmoid" if mask == "sigmoid" else None
    raw = layers.Dense(basis * stems, activation=act, name="mask")(x)
    m = _masks(raw, stems, basis, mask)
    out = layers.Dense(FRAME, use_bias=False, name="fb_decoder")(
        ApplyMask(name="apply_mask")(m, enc))
    if residual_last:
        out = ResidualLast(name="residual_last")(frames, out)
    if not stream_frames:
        return keras.Model(frames, out, name="cunet")
    if past.offset != size:  # _state_size must follow the layers above
        raise AssertionError(f"state layout {past.offset} != computed size {size}")
    state_out = layers.Concatenate(axis=1, name="state_out")(past.new_state)
    return keras.Model([frames, state_in], {"stems": out, "next_state": state_out},
                       name="cunet_stream")


def _state_size(basis: int, analysis_frames: int, filters: tuple[int, ...],
                kernel: int, dilations: int, tcn_kernel: int, hidden: int) -> int:
    """Floats of state per channel: the past inputs every causal layer keeps (in build order)."""
    size = (analysis_frames - 1) * FRAME
    width = basis
    for f in filters:  # strided encoder convolutions read kernel - 2 past frames
        size += (kernel - 2) * width
        width = f
    size += sum((tcn_kernel - 1) * 2 ** j * hidden for j in range(dilations))
    for i in reversed(range(len(filters) - 1)):  # delay of the upsampled frames, decoder conv
        size += width + (kernel - 1) * (width + filters[i])
        width = filters[i]
    return size + width  # the masks' upsampling delay


def state_size(config: dict[str, Any]) -> int:
    g = _geometry(config)
    return _state_size(int(config.get("basis", 256)),
                       int(g["analysis_frames"]), g["filters"], int(g["kernel"]),
                       int(g["dilations"]), int(g["tcn_kernel"]), int(g["hidden"]))
