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


def dilation_rates(config: dict[str, Any]) -> list[int]:
    x, r = int(config.get("dilations", 8)), int(config.get("repeats", 2))
    return [2 ** i for i in range(x)] * r


def state_size(config: dict[str, Any]) -> int:
    """Floats of state per channel: every dilated convolution's past input."""
    k, hidden = int(config.get("kernel", 3)), int(config.get("hidden", 128))
    return sum((k - 1) * d * hidden for d in dilation_rates(config))


def receptive_field(config: dict[str, Any]) -> int:
    """Frames (including the current one) that one output frame depends on."""
    k = int(config.get("kernel", 3))
    return 1 + sum((k - 1) * d for d in dilation_rates(config))


def build_tcn(stems: int = 3, context_frames: int | None = None, basis: int = 256,
              bottleneck: int = 64, hidden: int = 128, dilations: int = 8, repeats: int = 2,
              kernel: int = 3, mask: str = "sigmoid", residual_last: bool = True,
              stream_frames: int | None = None) -> keras.Model:
    """Filterbank encoder -> LayerNorm -> bottleneck -> ``repeats`` x ``dilations`` residual
    blocks (1x1 conv, PReLU, LayerNorm, causal depthwise conv dilated 2**i, PReLU, LayerNorm,
    1x1 conv) -> masks over the basis -> shared decoder. ``stream_frames``: the streaming twin."""
    config = {"dilations": dilations, "repeats": repeats, "kernel": kernel, "hidden": hidden}
    frames = keras.Input((stream_frames or context_frames, FRAME), name="frames")
    state_in = keras.Input((state_size(config),), name="state") if stream_frames else None
    enc = layers.Dense(basis, activation="relu", name="fb_encoder")(frames)
    x = layers.LayerNormalization(name="in_norm")(enc)
    x = layers.Dense(bottleneck, name="bottleneck")(x)
    offset, new_state = 0, []
    for i, d in enumerate(dilation_rates(config)):
        y = layers.Dense(hidden, name=f"b{i}_in")(x)
        y = layers.PReLU(shared_axes=[1], name=f"b{i}_act1")(y)
        y = layers.LayerNormalization(name=f"b{i}_norm1")(y)
        past = (kernel - 1) * d
        if stream_frames:
            prev = TakeState(offset, past, hidden, name=f"b{i}_state")(state_in)
            y = layers.Concatenate(axis=1, name=f"b{i}_join")([prev, y])
            new_state.append(KeepLast(past, name=f"b{i}_keep")(y))
            offset += past * hidden
        else:
            y = layers.ZeroPadding1D((past, 0), name=f"b{i}_pad")(y)
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
        out = ResidualLast(name="residual_last")(frames, out)
    if not stream_frames:
        return keras.Model(frames, out, name="tcn")
    state_out = layers.Concatenate(axis=1, name="state_out")(new_state)
    return keras.Model([frames, state_in], {"stems": out, "next_state": state_out},
                       name="tcn_stream")

