"""A causal temporal convolutional network (Conv-TasNet style) behind the learned filterbank.

Why: the window U-Net sees 64 frames (47 ms) and recomputes them on every invoke, so its context
cannot grow without its cost growing with it. This network is causal and shift-invariant (no
strides), so it streams exactly: each dilated convolution keeps the last ``(kernel-1)*dilation``
frames of its input as state, and every new frame costs the same whatever the receptive field
(1021 frames = 0.74 s with the defaults). Training runs on whole excerpts (every frame in the
loss), and the streamed output equals the full-sequence output.

``build_tcn(...)`` is the full-sequence model ``frames[batch, T, 64] -> stems[batch, T, S, 64]``;
``build_tcn(..., stream_frames=F)`` is its streaming twin with the same layers (same weights,
same order): ``frames[batch, F, 64], state[batch, state_size] -> stems, state``.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
from keras import layers, ops

from .unet import FRAME, ApplyMask, ResidualLast, _masks


@keras.saving.register_keras_serializable(package="rtsep")
class TakeState(layers.Layer):
    """state[batch, S] -> the slice [offset, offset + length*channels) as [batch, length, ch]."""

    def __init__(self, offset: int, length: int, channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offset, self.length, self.channels = offset, length, channels

    def call(self, state: Any) -> Any:
        part = state[:, self.offset:self.offset + self.length * self.channels]
        return ops.reshape(part, (-1, self.length, self.channels))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "offset": self.offset, "length": self.length,
                "channels": self.channels}


@keras.saving.register_keras_serializable(package="rtsep")
class KeepLast(layers.Layer):
    """x[batch, T, ch] -> its last ``length`` frames flattened: [batch, length*ch]."""

    def __init__(self, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    def call(self, x: Any) -> Any:
        tail = x[:, -self.length:, :]
        return ops.reshape(tail, (-1, self.length * x.shape[-1]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


def _geometry(config: dict[str, Any]) -> dict[str, int]:
    """The config keys that shape the state, with ``build_tcn``'s defaults (one source)."""
    defaults = inspect.signature(build_tcn).parameters
    keys = ("dilations", "repeats", "kernel", "hidden", "analysis_frames", "lookahead")
    return {k: int(config.get(k, defaults[k].default)) for k in keys}


def dilation_rates(config: dict[str, Any]) -> list[int]:
    g = _geometry(config)
    x, r = g["dilations"], g["repeats"]
    return [2 ** i for i in range(x)] * r


def _analysis_past(config: dict[str, Any]) -> int:
    """Past frames the encoder reads: ``analysis_frames`` contiguous 64-sample frames are every
    other frame at hop 32, so a window of (A - 1) * 2 past frames plus the current one."""
    return (_geometry(config)["analysis_frames"] - 1) * 2


def state_size(config: dict[str, Any]) -> int:
    """Floats of state per channel: the encoder's past frames, every dilated convolution's
    past input, and the delay line of the input frames (for the residual stem)."""
    g = _geometry(config)
    k, hidden = g["kernel"], g["hidden"]
    return (_analysis_past(config) * FRAME
            + sum((k - 1) * d * hidden for d in dilation_rates(config))
            + g["lookahead"] * FRAME)


def receptive_field(config: dict[str, Any]) -> int:
    """Frames (including the current one) that one output step depends on."""
    k = _geometry(config)["kernel"]
    return 1 + _analysis_past(config) + sum((k - 1) * d for d in dilation_rates(config))


class _Past:
    """Gives a causal layer its past frames: zero padding in the full-sequence model, a slice
    of the packed state (and the new state's part) in the streaming twin."""

    def __init__(self, state_in: Any | None) -> None:
        self.state_in, self.offset, self.new_state = state_in, 0, []

    def __call__(self, x: Any, past: int, channels: int, name: str) -> Any:
        if self.state_in is None:
            return layers.ZeroPadding1D((past, 0), name=f"{name}_pad")(x)
        prev = TakeState(self.offset, past, channels, name=f"{name}_state")(self.state_in)
        joined = layers.Concatenate(axis=1, name=f"{name}_join")([prev, x])
        self.new_state.append(KeepLast(past, name=f"{name}_keep")(joined))
        self.offset += past * channels
        return joined


def build_tcn(stems: int = 3, context_frames: int | None = None, basis: int = 256,
              bottleneck: int = 64, hidden: int = 128, dilations: int = 8, repeats: int = 2,
              kernel: int = 3, mask: str = "sigmoid", residual_last: bool = True,
              analysis_frames: int = 1, lookahead: int = 0,
              stream_frames: int | None = None) -> keras.Model:
    """Filterbank encoder -> LayerNorm -> bottleneck -> ``repeats`` x ``dilations`` residual
    blocks (1x1 conv, PReLU, LayerNorm, causal depthwise conv dilated 2**i, PReLU, LayerNorm,
    1x1 conv) -> masks over the basis -> shared decoder. ``stream_frames``: the streaming twin.

    ``analysis_frames`` A > 1: each basis channel reads A contiguous frames (64*A samples
    ending at the newest frame) instead of one: the frequency resolution a bass line needs.
    ``lookahead`` L: the output at step t is frame t - L, synthesised from an analysis window
    that extends L frames past it: a linear-phase filter needs that delay (a causal one shifts
    the phase of what it separates, and SDR counts the shift as error)."""
    config = {"dilations": dilations, "repeats": repeats, "kernel": kernel, "hidden": hidden,
              "analysis_frames": analysis_frames, "lookahead": lookahead}
    if lookahead and analysis_frames * 2 - 1 <= lookahead:
        raise ValueError(f"lookahead {lookahead} must lie inside the analysis window "
                         f"({analysis_frames * 2 - 1} frames)")
    frames = keras.Input((stream_frames or context_frames, FRAME), name="frames")
    state_in = keras.Input((state_size(config),), name="state") if stream_frames else None
    past = _Past(state_in)
    if analysis_frames > 1:
        x = past(frames, _analysis_past(config), FRAME, "enc")
        enc = layers.Conv1D(basis, analysis_frames, dilation_rate=2, padding="valid",
                            activation="relu", name="fb_encoder")(x)
    else:
        enc = layers.Dense(basis, activation="relu", name="fb_encoder")(frames)
    x = layers.LayerNormalization(name="in_norm")(enc)
    x = layers.Dense(bottleneck, name="bottleneck")(x)
    for i, d in enumerate(dilation_rates(config)):
        y = layers.Dense(hidden, name=f"b{i}_in")(x)
        y = layers.PReLU(shared_axes=[1], name=f"b{i}_act1")(y)
        y = layers.LayerNormalization(name=f"b{i}_norm1")(y)
        y = past(y, (kernel - 1) * d, hidden, f"b{i}")
        y = layers.DepthwiseConv1D(kernel, dilation_rate=d, padding="valid",
                                   name=f"b{i}_dconv")(y)
        y = layers.PReLU(shared_axes=[1], name=f"b{i}_act2")(y)
        y = layers.LayerNormalization(name=f"b{i}_norm2")(y)
        y = layers.Dense(bottleneck, name=f"b{i}_out")(y)
        x = layers.Add(name=f"b{i}_add")([x, y])
    x = layers.PReLU(shared_axes=[1], name="mask_act")(x)
    act = "sigmoid" if mask == "sigmoid" else None
    raw = layers.Dense(basis * stems, activation=act, name="mask")(x)
    m = _masks(raw, stems, basis, mask)
    masked = ApplyMask(name="apply_mask")(m, enc)
    out = layers.Dense(FRAME, use_bias=False, name="fb_decoder")(masked)
    if residual_last:
        delayed = frames
        if lookahead:  # the input frame the output step stands for: frame t - L
            delayed = layers.Cropping1D((0, lookahead), name="delay_crop")(
                past(frames, lookahead, FRAME, "delay"))
        out = ResidualLast(name="residual_last")(delayed, out)
    if not stream_frames:
        return keras.Model(frames, out, name="tcn")
    parts = past.new_state
    state_out = parts[0] if len(parts) == 1 else layers.Concatenate(axis=1, name="state_out")(
        parts)
    return keras.Model([frames, state_in], {"stems": out, "next_state": state_out},
                       name="tcn_stream")
