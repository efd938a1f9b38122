"""The frame grid shared by training and the streaming engine.

Frames are N = 64 samples long at hop H (H divides N). Frame k covers input samples
``[k*H - (N - H), k*H + H)``: the stream is preceded by N - H samples of silence so that every
sample is covered by N/H frames from the very first one. Synthesis multiplies each output frame
by :func:`synthesis_window` and overlap-adds; the window sums to exactly 1 over the overlaps, so
an all-ones mask gives the input back.
"""

from __future__ import annotations

import numpy as np

FRAME = 64


def check_hop(hop: int, frame: int = FRAME) -> None:
    """Refuse hops that do not tile the frame (the overlap-add would not sum to one)."""
    if hop <= 0 or frame % hop != 0:
        raise ValueError(f"hop must divide the frame length {frame}; got {hop}")


def synthesis_window(hop: int, frame: int = FRAME) -> np.ndarray:
    """Window whose shifted copies at ``hop`` sum to 1 (COLA): rectangular if hop == frame,
    else a periodic Hann scaled by 2*hop/frame. Returns float32[frame]."""
    check_hop(hop, frame)
    if hop == frame:
        return np.ones(frame, dtype=np.float32)
    n = np.arange(frame)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame)
    return (hann * (2.0 * hop / frame)).astype(np.float32)


def latency_terms(hop: int, lookahead_frames: int, out_frames: int,
                  frame: int = FRAME) -> dict[str, int]:
    """The algorithmic delay in samples, term by term (DESIGN.md section 4).

    ``frame``: N - 1, the cost of accepting any block size; ``lookahead``: L*H, frames the model
    looks into the future; ``out_frames``: (F - 1)*H, when F frames are produced per invoke the
    oldest of them waits for the newest.
    """
    return {
        "frame": frame - 1,
        "lookahead": lookahead_frames * hop,
        "out_frames": (out_frames - 1) * hop,
    }


def frame_signal(x: np.ndarray, hop: int, frame: int = FRAME) -> np.ndarray:
    """Frames of a 1-D signal on the engine's grid: float32[num_frames, frame].

    ``num_frames = ceil(len(x) / hop) + frame/hop - 1``: every sample is covered by frame/hop
    frames (zero padded at both ends)."""
    check_hop(hop, frame)
    n = len(x)
    num = -(-n // hop) + frame // hop - 1
    pad = np.zeros(frame - hop + num * hop, dtype=np.float32)
    pad[frame - hop: frame - hop + n] = x
    idx = np.arange(num)[:, None] * hop + np.arange(frame)[None, :]
    return pad[idx]


def overlap_add(frames: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`frame_signal` with the synthesis window: frames[..., num, frame] ->
    signal[..., length]."""
    frame = frames.shape[-1]
    w = synthesis_window(hop, frame)
    num = frames.shape[-2]
    out = np.zeros(frames.shape[:-2] + ((num - 1) * hop + frame,), dtype=np.float32)
    for k in range(num):
        out[..., k * hop: k * hop + frame] += frames[..., k, :] * w
    return out[..., frame - hop: frame - hop + length]
