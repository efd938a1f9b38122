"""Separation quality measures (DESIGN.md section 7), in plain numpy.

- :func:`sdr`: the MDX form ``10*log10(sum s^2 / sum (s - s_hat)^2)`` over all samples and
  channels of one song and stem. No projection, no windows: fast, and it rewards getting the
  level right, which is why a constant gain already gains over the raw mixture.
- :func:`best_gain_estimate`: ``g * mix`` with ``g = <s, mix> / <mix, mix>``, the best a
  separator that only turns the volume down can do: the floor every model is reported above.
- :func:`oracle_irm`: the ideal ratio mask from the true stems (STFT 2048, hop 512,
  non-causal): a ceiling for mask-based separation at that resolution.
- :func:`bss_sdr`: BSSEval v4 SDR through ``museval``, only on request (minutes per song).

Arrays are ``float[frames, channels]`` for one signal and ``float[stems, frames, channels]``
for several, like the engine's output. Sums are taken in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MissingExtraError

#: Added to both energies, as MDX does, so silent references and perfect estimates stay finite.
EPS = 1e-7
N_FFT = 2048
HOP = 512
#: Frames of STFT per chunk in :func:`oracle_irm` (bounds memory for long songs).
_CHUNK_FRAMES = 256


def _energy(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.dot(x.ravel(), x.ravel()))


def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPS) -> float:
    """MDX SDR in dB of one estimate of one stem over all its samples and channels."""
    reference = np.asarray(reference)
    estimate = np.asarray(estimate)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {reference.shape} and estimate {estimate.shape} differ "
                         "in shape")
    err = np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)
    return float(10.0 * np.log10((_energy(reference) + eps) / (_energy(err) + eps)))


def best_gain(reference: np.ndarray, mix: np.ndarray) -> float:
    """The least-squares constant gain ``<s, mix> / <mix, mix>`` (0 for a silent mixture)."""
    s = np.asarray(reference, np.float64).ravel()
    m = np.asarray(mix, np.float64).ravel()
    if s.shape != m.shape:
        raise ValueError(f"reference {reference.shape} and mixture {mix.shape} differ in shape")
    mm = float(np.dot(m, m))
    return float(np.dot(s, m)) / mm if mm > 0 else 0.0


def best_gain_estimate(reference: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """``g * mix`` with the best constant gain: the floor a model must beat."""
    return (best_gain(reference, mix) * np.asarray(mix, np.float64)).astype(np.float32)


def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def oracle_irm(stems: np.ndarray, mix: np.ndarray, n_fft: int = N_FFT,
               hop: int = HOP) -> np.ndarray:
    """Ideal ratio mask estimates ``float32[stems, frames, channels]`` of ``mix``.

    Mask ``|S_i| / sum_j |S_j|`` per bin (so pass every source of the song, not only the
    evaluated ones), applied to the mixture's STFT (periodic Hann, ``n_fft``, ``hop``), then a
    weighted overlap-add inverse: with all masks at one it returns ``mix`` to float precision.
    Processed in chunks of frames, so a long song needs little memory."""
    stems = np.asarray(stems, np.float32)
    mix = np.asarray(mix, np.float32)
    if stems.ndim != 3 or stems.shape[1:] != mix.shape or mix.ndim != 2:
        raise ValueError(f"stems must be [stems, frames, channels] and mix [frames, channels] "
                         f"of the same frames and channels; got {stems.shape} and {mix.shape}")
    if n_fft % hop:
        raise ValueError(f"hop {hop} must divide n_fft {n_fft}")
    n_src, n, channels = stems.shape
    pad = n_fft - hop  # every sample is then covered by n_fft / hop frames
    frames = -(-(n + pad) // hop)
    parts = n_fft // hop
    segments = frames + parts - 1  # the padded signal in units of hop samples
    win = _hann(n_fft)
    idx = np.arange(n_fft)[None, :]
    padded = np.zeros((n_src + 1, segments * hop, channels), np.float32)
    padded[0, pad:pad + n] = mix
    padded[1:, pad:pad + n] = stems
    # Overlap-add in units of hop: part r of frame k lands on segment k + r.
    out = np.zeros((n_src, segments, hop, channels), np.float32)
    norm = np.zeros((segments, hop), np.float64)
    win_parts = (win.astype(np.float64) ** 2).reshape(parts, hop)
    for r in range(parts):
        norm[r:r + frames] += win_parts[r]
    for c in range(channels):
        for k0 in range(0, frames, _CHUNK_FRAMES):
            k1 = min(frames, k0 + _CHUNK_FRAMES)
            pos = np.arange(k0, k1)[:, None] * hop + idx  # [chunk, n_fft]
            spec = np.fft.rfft(padded[:, pos, c] * win, axis=-1)  # [1 + src, chunk, bins]
            mag = np.abs(spec[1:])
            masks = mag / (mag.sum(axis=0) + 1e-12)
            y = np.fft.irfft(masks * spec[0], n=n_fft, axis=-1) * win  # [src, chunk, n_fft]
            y = y.reshape(n_src, k1 - k0, parts, hop)
            for r in range(parts):
                out[:, k0 + r:k1 + r, :, c] += y[:, :, r]
    out /= np.maximum(norm, 1e-12).astype(np.float32)[None, :, :, None]
    out = out.reshape(n_src, segments * hop, channels)
    return np.ascontiguousarray(out[:, pad:pad + n])


def require_museval() -> Any:
    """Import museval, or say how to install it (checked before a long evaluation starts)."""
    try:
        import museval
    except ImportError:
        raise MissingExtraError("BSSEval v4 (--bss) needs museval: pip install museval") from None
    except Exception as e:  # noqa: BLE001 - museval imports musdb/stempeg, which need ffmpeg
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MissingExtraError(f"museval is installed but cannot be imported ({first}); its "
                                "dependency stempeg needs ffmpeg: apt-get install ffmpeg"
                                ) from None
    return museval


def bss_sdr(references: np.ndarray, estimates: np.ndarray, sample_rate: int) -> np.ndarray:
    """BSSEval v4 SDR per stem (museval, 1 s windows, median over windows, as SiSEC 2018).

    ``references`` and ``estimates`` are ``[stems, frames, channels]``; every stem is scored
    against all references together, so pass the estimates of one song at once."""
    museval = require_museval()
    sdr_frames, _isr, _sir, _sar = museval.evaluate(
        np.asarray(references, np.float64), np.asarray(estimates, np.float64),
        win=sample_rate, hop=sample_rate, mode="v4", padding=True)
    with np.errstate(all="ignore"):
        return np.array([np.nanmedian(s) if np.isfinite(s).any() else np.nan
                         for s in np.asarray(sdr_frames)])
