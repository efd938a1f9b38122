"""The ``spec`` variant: stem masks on a 2048-point STFT, behind the engine's 64-sample frames.

Why: a mask on 64-sample frames cannot tell a bass note from the low end of a piano (periods of
400-1100 samples): the oracle ratio mask at STFT 64 reaches +3.66 dB over the constant-gain floor
on the validation songs, at STFT 2048 +6.21 dB. This variant buys that frequency resolution
(21.5 Hz bins) with latency: it is the quality model for files, the 64-sample-frame models stay
for the lowest live latency.

Shapes. The full-sequence model maps ``frames: float32[batch, T, 64]`` (engine frames at hop 64,
rectangular synthesis, so the frames tile the signal; T a multiple of 8) to
``stems: float32[batch, T, stems, 64]`` like every variant:

1. the frames are the signal ``x[batch, 64 T]``; zero padded by ``n_fft - R`` (R = n_fft / 4)
   on both sides, STFT frame j covers padded samples ``[j R, j R + n_fft)`` (Hann window), so
   every sample is covered by 4 frames: ``M = 64 T / R + 3`` frames (``STFT``);
2. features ``log(|X| + 1e-3)``, batch-normalised per bin; a per-frame Dense encoder (Open-Unmix
   style: all bins at once, so harmonic structure is seen together) with tanh;
3. over STFT frames: one centred convolution of kernel ``2 lookahead + 1``, then dilated
   residual convolutions: causal (past context, free of latency; the lookahead convolution
   is the only look into the future) or, with ``centered``, centred (as much future as past:
   a file model, whose latency costs nothing, hears how a note goes on before it decides
   what the note is);
4. a per-frame head gives one mask per stem and bin, softmax across stems (the masks sum to 1,
   so the stems sum to the mixture), applied to the complex mixture STFT;
5. inverse STFT (``ISTFT``: irfft in training, two real FFTs in TFLite, which has no inverse
   FFT), Hann synthesis window, overlap-add; stems back to 64-sample frames; the last stem is
   the residual (input minus the others: exact transparency).

A window model (``window_twin``) is the same graph with the head and the inverse STFT computed
only for the STFT frames that make the window's output frames; it equals the full-sequence
model on the window exactly (the parity check after conversion compares them), and the
full-sequence model on the whole stream when the window holds the receptive field
(``min_lookahead_frames``, ``min_context_frames``).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .unet import FRAME, ResidualLast, SelectFrames


def stft_hop(n_fft: int) -> int:
    return n_fft // 4


def frames_multiple(config: dict[str, Any]) -> int:
    """Sequence lengths (engine frames) are multiples of one STFT hop."""
    return stft_hop(int(_cfg(config)["n_fft"])) // FRAME


def _cfg(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``build_spec``'s defaults filled in (one source for them)."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(build_spec).parameters.items()}
    return {**defaults, **config}


def _reach(dilations: Any) -> int:
    """STFT frames a centred kernel-3 stack of these dilations sees on each side."""
    return sum(int(d) for d in dilations)


def past_frames(config: dict[str, Any]) -> int:
    """STFT frames of past a mask sees (the lookahead convolution's and the dilated stacks':
    a causal kernel-3 convolution of dilation d reaches 2 d back, a centred one d)."""
    c = _cfg(config)
    reach = _reach(c["dilations"])
    return (int(c["lookahead"]) + (reach if c["centered"] else 2 * reach)
            + _reach(c["refine_dilations"]))


def future_frames(config: dict[str, Any]) -> int:
    """STFT frames of future a mask sees (the lookahead convolution's, the refining stack's,
    and with ``centered`` the dilated stack's)."""
    c = _cfg(config)
    return (int(c["lookahead"]) + _reach(c["refine_dilations"])
            + (_reach(c["dilations"]) if c["centered"] else 0))


def min_lookahead_frames(config: dict[str, Any]) -> int:
    """Engine frames a window's output must end before the window's end so that every STFT
    frame it needs (3 overlapping ones, each seeing ``future_frames`` ahead) lies inside."""
    return frames_multiple(config) * (3 + future_frames(config))


def min_context_frames(config: dict[str, Any], out_frames: int) -> int:
    """The shortest window whose output equals the full-sequence model on the whole stream:
    output, lookahead, and the masks' whole past (plus the 3 frames of left padding)."""
    per = frames_multiple(config)
    return out_frames + min_lookahead_frames(config) + per * (past_frames(config) + 3)


def window_frames(config: dict[str, Any], out_frames: int, lookahead_frames: int) -> int:
    """The shortest window holding the receptive field with ``lookahead_frames`` (at least
    ``min_lookahead_frames``): the converter's default context."""
    return min_context_frames(config, out_frames) + lookahead_frames - min_lookahead_frames(
        config)


@keras.saving.register_keras_serializable(package="rtsep")
class STFT(layers.Layer):
    """frames [batch, T, 64] (hop 64) -> (re, im) [batch, M, n_fft/2 + 1], M = 64 T / R + 3."""

    def __init__(self, n_fft: int = 2048, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_fft = n_fft

    def call(self, frames: Any) -> Any:
        r = stft_hop(self.n_fft)
        x = tf.reshape(frames, [tf.shape(frames)[0], -1])
        x = tf.pad(x, [[0, 0], [self.n_fft - r, self.n_fft - r]])
        blocks = tf.reshape(x, [tf.shape(x)[0], -1, r])
        m = tf.shape(blocks)[1] - 3
        win = tf.constant(_hann(self.n_fft))
        framed = tf.concat([blocks[:, i:i + m] for i in range(4)], axis=-1) * win
        spec = tf.signal.rfft(framed)
        return tf.math.real(spec), tf.math.imag(spec)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_fft": self.n_fft}


@keras.saving.register_keras_serializable(package="rtsep")
class ISTFT(layers.Layer):
    """(re, im) [batch, M, stems, n_fft/2 + 1] -> frames [batch, 64 (M - 3) R / 64, stems, 64].

    Hann synthesis window scaled for Hann^2 at hop n_fft/4 (sums to 1.5), overlap-add; only the
    samples covered by all 4 of the given frames are returned. Two ways to the same samples:
    ``tflite=True`` inverts by two real FFTs of the even and odd extensions (x = (Re
    RFFT(re_ext) + Im RFFT(im_ext)) / n_fft: TFLite has RFFT2D but no inverse); training uses
    TensorFlow's irfft, whose gradient costs a fraction of the two FFTs' (reverses, concats and
    an RFFT gradient on every frame of every stem): a training step 0.81 s against 1.32 s
    (``python benchmarks/spec_train_step.py``: batch 8 x 3 s, one thread). The overlap-add pads
    each quarter of the frames into place (its gradient is a slice) rather than slicing the
    frames (whose gradient pads the whole frame tensor once per quarter)."""

    def __init__(self, n_fft: int = 2048, tflite: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_fft = n_fft
        self.tflite = tflite

    def call(self, re: Any, im: Any) -> Any:
        n, r = self.n_fft, stft_hop(self.n_fft)
        if self.tflite:
            half = n // 2
            even = tf.concat([re, tf.reverse(re[..., 1:half], [-1])], axis=-1)
            odd = tf.concat([im, -tf.reverse(im[..., 1:half], [-1])], axis=-1)
            a, b = tf.signal.rfft(even), tf.signal.rfft(odd)
            u = (tf.math.real(a) + tf.math.imag(b)) / n  # samples 0 .. n/2
            v = (tf.math.real(a) - tf.math.imag(b)) / n  # samples n - k, k = 1 .. n/2 - 1
            x = tf.concat([u, tf.reverse(v[..., 1:half], [-1])], axis=-1)
        else:
            x = tf.signal.irfft(tf.complex(re, im), fft_length=[n])
        x = x * tf.constant(_hann(n) / 1.5)  # [batch, M, stems, n]
        batch, m, stems = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        quarters = tf.unstack(tf.reshape(x, [batch, m, stems, 4, r]), axis=3)
        # Block b of the padded signal sums quarter i of frame b - i; keep b = 3 .. M - 1.
        y = sum(tf.pad(q, [[0, 0], [i, 3 - i], [0, 0], [0, 0]]) for i, q in enumerate(quarters))
        y = tf.reshape(y[:, 3:m], [batch, m - 3, stems, r // FRAME, FRAME])
        y = tf.transpose(y, [0, 1, 3, 2, 4])  # [batch, M - 3, R / 64, stems, 64]
        return tf.reshape(y, [batch, -1, stems, FRAME])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_fft": self.n_fft, "tflite": self.tflite}


@keras.saving.register_keras_serializable(package="rtsep")
class LogMagnitude(layers.Layer):
    """(re, im) -> log(|X| + eps): a dB-like scale, so quiet stems move the input too."""

    def __init__(self, eps: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def call(self, re: Any, im: Any) -> Any:
        return tf.math.log(tf.sqrt(re * re + im * im + 1e-12) + self.eps)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


@keras.saving.register_keras_serializable(package="rtsep")
class ComplexMask(layers.Layer):
    """masks [batch, M, stems, K] x (re, im) [batch, M, K] -> (re, im) [batch, M, stems, K]."""

    def call(self, masks: Any, re: Any, im: Any) -> Any:
        return masks * tf.expand_dims(re, 2), masks * tf.expand_dims(im, 2)


def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def build_spec(stems: int = 3, context_frames: int | None = None, n_fft: int = 2048,
               hidden: int = 256, lookahead: int = 2,
               dilations: tuple[int, ...] = (1, 2, 4, 8, 16), centered: bool = False,
               refine_dilations: tuple[int, ...] = (), residual_last: bool = True,
               output: tuple[int, int] | None = None, tflite: bool = False) -> keras.Model:
    """The full-sequence model, or with ``output=(start, stop)`` (engine frames, multiples of
    n_fft / 256) the same weights computing only those output frames (``window_twin``).
    ``tflite``: only operations TFLite runs (the inverse STFT by real FFTs; see ``ISTFT``).

    ``refine_dilations``: centred dilated residual blocks after the dilated stack (conv, ReLU,
    then a batch norm whose scale starts at zero, so each block starts as the identity). Why:
    a file model may hear how a note goes on before it assigns it, and grown onto a trained
    causal model (``rtsep train --init``) the blocks start from exactly that model's output,
    so fine-tuning begins at its quality instead of relearning what the stack already knew."""
    per = stft_hop(n_fft) // FRAME
    frames = keras.Input((context_frames, FRAME), name="frames")
    re, im = STFT(n_fft, name="stft")(frames)
    feats = LogMagnitude(name="log_mag")(re, im)
    h = layers.BatchNormalization(name="in_bn")(feats)
    h = layers.Dense(hidden, use_bias=False, name="enc")(h)
    h = layers.BatchNormalization(name="enc_bn")(h)
    h0 = layers.Activation("tanh", name="enc_act")(h)
    h = layers.Conv1D(hidden, 2 * lookahead + 1, padding="same", name="look")(h0)
    h = layers.BatchNormalization(name="look_bn")(h)
    h = layers.ReLU(name="look_act")(h)
    for i, d in enumerate(dilations):
        y = layers.Conv1D(hidden, 3, dilation_rate=int(d),
                          padding="same" if centered else "causal",
                          name=f"tcn{i}_conv")(h)
        y = layers.BatchNormalization(name=f"tcn{i}_bn")(y)
        y = layers.ReLU(name=f"tcn{i}_act")(y)
        h = layers.Add(name=f"tcn{i}_res")([h, y])
    for i, d in enumerate(refine_dilations):
        y = layers.Conv1D(hidden, 3, dilation_rate=int(d), padding="same",
                          name=f"refine{i}_conv")(h)
        y = layers.ReLU(name=f"refine{i}_act")(y)
        y = layers.BatchNormalization(gamma_initializer="zeros", name=f"refine{i}_bn")(y)
        h = layers.Add(name=f"refine{i}_res")([h, y])
    h = layers.Concatenate(name="skip")([h0, h])
    if output is not None:  # only the STFT frames whose inverse makes the output frames
        start, stop = output
        if start % per or stop % per or stop <= start:
            raise ValueError(f"output frames ({start}, {stop}) must be multiples of {per}")
        j0, j1 = start // per, stop // per + 3
        h = SelectFrames(j0, j1, name="head_frames")(h)
        re = SelectFrames(j0, j1, name="re_frames")(re)
        im = SelectFrames(j0, j1, name="im_frames")(im)
    h = layers.Dense(hidden, name="head")(h)
    h = layers.BatchNormalization(name="head_bn")(h)
    h = layers.ReLU(name="head_act")(h)
    bins = n_fft // 2 + 1
    m = layers.Dense(bins * stems, name="mask")(h)
    m = layers.Reshape((-1, stems, bins), name="masks")(m)
    m = layers.Softmax(axis=2, name="masks_softmax")(m)
    sre, sim = ComplexMask(name="apply_mask")(m, re, im)
    out = ISTFT(n_fft, tflite=tflite, name="istft")(sre, sim)
    if residual_last:
        ref = frames if output is None else SelectFrames(*output, name="out_frames")(frames)
        out = ResidualLast(name="residual_last")(ref, out)
    return keras.Model(frames, out, name="spec")


def window_twin(model: keras.Model, config: dict[str, Any], context_frames: int,
                out_frames: int, lookahead_frames: int) -> keras.Model:
    """The runtime's window model with ``model``'s weights: ``frames[batch, context, 64]`` ->
    ``{"stems": [batch, out_frames, stems, 64]}``, the full model's output frames that end
    ``lookahead_frames`` before the window's end, computed for those frames only."""
    need = min_lookahead_frames(config)
    if lookahead_frames < need:
        raise ValueError(f"this spec model needs lookahead_frames >= {need} (its STFT frames "
                         f"and their lookahead), not {lookahead_frames}")
    shortest = window_frames(config, out_frames, lookahead_frames)
    if context_frames < shortest:
        raise ValueError(f"this spec model needs context_frames >= {shortest} (its receptive "
                         f"field before {out_frames} output frames), not {context_frames}")
    stop = context_frames - lookahead_frames
    twin = build_spec(**{**config, "context_frames": context_frames},
                      output=(stop - out_frames, stop), tflite=True)
    twin.set_weights(model.get_weights())
    frames = keras.Input((context_frames, FRAME), name="frames")
    return keras.Model(frames, {"stems": twin(frames, training=False)}, name="window")
