"""Keras U-Net architectures over a sequence of 64-sample frames.

Every variant maps ``frames: float32[batch, T, 64]`` (T frames at hop H, see rtsep.framing) to
``stems: float32[batch, T, stems, 64]``: one output frame per input frame and stem, which the
engine multiplies by the synthesis window and overlap-adds. T must be a multiple of
``2 ** len(filters)`` (each encoder level halves it).

Variants (``VARIANTS``):
- ``seed``: the seed design, faithful: the mask is computed from raw samples and multiplied with
  the input frame (a per-sample time-domain mask).
- ``fb``: the same U-Net behind a learned filterbank: a Dense(basis) + ReLU encoder per frame
  (a Conv1D of kernel 64 at stride H over the signal), masks over the basis channels, and a
  Dense(64) decoder shared by the stems. Gains frequency selectivity inside a frame.
Both take ``mask="sigmoid"`` (independent masks, the seed) or ``"softmax"`` (normalised across
stems). ``residual_last=True`` makes the last stem ``input - sum(other stems)`` so the stems add
up to the input exactly (a transparent remix at 0 dB).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

FRAME = 64


def _unet(x: Any, filters: tuple[int, ...], out_channels: int, kernel: int,
          dropout: float, activation: str, name: str) -> Any:
    """Encoder Conv1D(stride 2)+BN+LeakyReLU(0.2); decoder Conv1DTranspose+ReLU, Dropout after
    the 1st and 3rd upsampling, Concatenate skips; last Conv1DTranspose to ``out_channels``.

    x: [batch, T, C] -> [batch, T, out_channels]."""
    skips = []
    for i, f in enumerate(filters):
        x = layers.Conv1D(f, kernel, strides=2, padding="same", name=f"{name}enc{i}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}enc{i}_bn")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}enc{i}_act")(x)
        skips.append(x)
    for i, (f, skip) in enumerate(zip(reversed(filters[:-1]), reversed(skips[:-1]))):
        x = layers.Conv1DTranspose(f, kernel, strides=2, padding="same",
                                   name=f"{name}dec{i}_conv")(x)
        x = layers.ReLU(name=f"{name}dec{i}_act")(x)
        if i in (0, 2) and dropout > 0:
            x = layers.Dropout(dropout, name=f"{name}dec{i}_drop")(x)
        x = layers.Concatenate(name=f"{name}dec{i}_skip")([x, skip])
    return layers.Conv1DTranspose(out_channels, kernel, strides=2, padding="same",
                                  activation=activation, name=f"{name}mask")(x)


def _masks(raw: Any, stems: int, width: int, mask: str) -> Any:
    """[batch, T, stems*width] -> [batch, T, stems, width], normalised if ``mask='softmax'``."""
    m = layers.Reshape((-1, stems, width), name="masks")(raw)
    if mask == "softmax":
        m = layers.Softmax(axis=2, name="masks_softmax")(m)
    return m


@keras.saving.register_keras_serializable(package="rtsep")
class ApplyMask(layers.Layer):
    """masks [batch, T, stems, W] * features [batch, T, W] -> [batch, T, stems, W]."""

    def call(self, masks: Any, features: Any) -> Any:
        return masks * ops.expand_dims(features, 2)


@keras.saving.register_keras_serializable(package="rtsep")
class ResidualLast(layers.Layer):
    """Replace the last stem by input minus the others, so the stems sum to the input.

    frames [batch, T, 64], stems [batch, T, S, 64] -> [batch, T, S, 64]."""

    def call(self, frames: Any, stems: Any) -> Any:
        rest = frames - ops.sum(stems[:, :, :-1, :], axis=2)
        return ops.concatenate([stems[:, :, :-1, :], ops.expand_dims(rest, 2)], axis=2)


@keras.saving.register_keras_serializable(package="rtsep")
class SelectFrames(layers.Layer):
    """[batch, T, ...] -> [batch, stop - start, ...]: the frames a window model outputs."""

    def __init__(self, start: int, stop: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, x: Any) -> Any:
        return x[:, self.start:self.stop]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="rtsep")
class LogCompress(layers.Layer):
    """log(eps + x) of non-negative features: a dB-like scale for the mask network, so a stem
    mixed 30 dB below the rest moves its input as much as a loud one does (on a linear scale
    it is lost in the rounding of the first layer). The masks still multiply linear features."""

    def __init__(self, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def call(self, x: Any) -> Any:
        return ops.log(x + self.eps)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


def _residual_last(frames: Any, out: Any) -> Any:
    return ResidualLast(name="residual_last")(frames, out)


def build_seed(stems: int = 3, context_frames: int | None = None,
               filters: tuple[int, ...] = (16, 32, 64, 128, 256, 512), kernel: int = 5,
               dropout: float = 0.5, mask: str = "sigmoid",
               residual_last: bool = False) -> keras.Model:
    """The seed U-Net: masks from raw 64-sample frames, multiplied with the input frame."""
    frames = keras.Input((context_frames, FRAME), name="frames")
    act = "sigmoid" if mask == "sigmoid" else None
    raw = _unet(frames, tuple(filters), FRAME * stems, kernel, dropout, act, "")
    m = _masks(raw, stems, FRAME, mask)
    out = ApplyMask(name="apply_mask")(m, frames)
    if residual_last:
        out = _residual_last(frames, out)
    return keras.Model(frames, out, name="seed")


def build_fb(stems: int = 3, context_frames: int | None = None,
             filters: tuple[int, ...] = (16, 32, 64, 128, 256, 512), kernel: int = 5,
             dropout: float = 0.5, mask: str = "sigmoid", residual_last: bool = False,
             basis: int = 256, analysis_frames: int = 1, analysis: str = "causal",
             compress: str = "none") -> keras.Model:
    """The seed U-Net behind a learned filterbank (encoder basis channels, shared decoder).

    ``analysis_frames`` > 1 makes the encoder a convolution over several frames: a longer
    analysis window (frequency resolution for bass, whose periods are 400-1100 samples).
    ``analysis="causal"``: the current and the previous frames (overlapping, 32 * (A + 1)
    samples), no latency; ``"centered"``: A contiguous frames (every other one, 64 * A samples)
    centred on the output frame, so the decoder can act as a linear-phase filter; it needs
    about A frames of lookahead at run time (a causal filter shifts the phase of what it
    separates, and SDR counts the shift as error). ``"dual"``: both, side by side (``basis``
    channels each): the 64-sample basis keeps the time resolution drums need, the centred
    512-sample one the frequency resolution of bass. ``compress="log"``: the U-Net sees
    log(eps + features) (``LogCompress``), the masks still apply to the linear features."""
    if analysis not in ("causal", "centered", "dual"):
        raise ValueError(f"analysis must be 'causal', 'centered' or 'dual', not {analysis!r}")
    if analysis == "dual" and analysis_frames < 2:
        raise ValueError("analysis='dual' needs analysis_frames > 1")
    frames = keras.Input((context_frames, FRAME), name="frames")
    if analysis_frames > 1 and analysis == "dual":
        short = layers.Dense(basis, activation="relu", name="fb_encoder_short")(frames)
        long = layers.Conv1D(basis, analysis_frames, dilation_rate=2, padding="same",
                             activation="relu", name="fb_encoder_long")(frames)
        enc = layers.Concatenate(name="fb_encoder")([short, long])
        basis = 2 * basis
    elif analysis_frames > 1 and analysis == "centered":
        enc = layers.Conv1D(basis, analysis_frames, dilation_rate=2, padding="same",
                            activation="relu", name="fb_encoder")(frames)
    elif analysis_frames > 1:
        enc = layers.Conv1D(basis, analysis_frames, padding="causal", activation="relu",
                            name="fb_encoder")(frames)
    else:
        enc = layers.Dense(basis, activation="relu", name="fb_encoder")(frames)
    if compress not in ("none", "log"):
        raise ValueError(f"compress must be 'none' or 'log', not {compress!r}")
    seen = LogCompress(name="fb_log")(enc) if compress == "log" else enc
    act = "sigmoid" if mask == "sigmoid" else None
    raw = _unet(seen, tuple(filters), basis * stems, kernel, dropout, act, "")
    m = _masks(raw, stems, basis, mask)
    masked = ApplyMask(name="apply_mask")(m, enc)
    out = layers.Dense(FRAME, use_bias=False, name="fb_decoder")(masked)
    if residual_last:
        out = _residual_last(frames, out)
    return keras.Model(frames, out, name="fb")


VARIANTS = ("seed", "fb", "tcn", "cunet", "spec")


def build(variant: str, **config: Any) -> keras.Model:
    """Build a variant by name with its constructor arguments (kept in the model card)."""
    if variant == "tcn":  # models/tcn.py builds on this module's layers
        from .tcn import build_tcn
        return build_tcn(**config)
    if variant == "cunet":
        from .cunet import build_cunet
        return build_cunet(**config)
    if variant == "spec":
        from .spec import build_spec
        return build_spec(**config)
    builders = {"seed": build_seed, "fb": build_fb}
    if variant not in builders:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return builders[variant](**config)


def levels_multiple(filters: tuple[int, ...]) -> int:
    """T must be a multiple of this: every encoder level halves the sequence."""
    return 2 ** len(filters)


def frames_multiple(variant: str, config: dict[str, Any]) -> int:
    """Sequence lengths a variant takes are multiples of this (1 for the unstrided tcn)."""
    if variant == "tcn":
        return 1
    if variant == "cunet":
        from .cunet import frames_multiple as cunet_multiple
        return cunet_multiple(config)
    if variant == "spec":
        from .spec import frames_multiple as spec_multiple
        return spec_multiple(config)
    return levels_multiple(tuple(config.get("filters", (16, 32, 64, 128, 256, 512))))
