"""``rtsep file``: separate songs into stem files through the streaming engine.

Blockwise from disk to disk (constant memory for any length): read a block, resample to the
model's rate if needed (soxr, streaming), ``Separator.process``, drop the first
latency_samples so the stems line up with the input, resample back, write. The stems have the
input's length, rate and channel count. Outputs are written as ``.part`` files and renamed when
complete; a failing song leaves nothing behind and does not stop the others.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from tqdm import tqdm

from .audio_io import StemWriter, open_input, read_blocks
from .engine import MAX_CHANNELS, Stream, load
from .errors import AudioInputError, ConfigError, RtsepError

BLOCK = 65536


@dataclass
class FileResult:
    path: Path
    outputs: list[Path]
    seconds: float  # audio duration
    wall: float  # processing time

    @property
    def speed(self) -> float:
        return self.seconds / self.wall if self.wall > 0 else float("inf")


def select_stems(available: Sequence[str], wanted: str | None) -> tuple[str, ...]:
    """Parse ``--stems a,b`` against the model's stems (None: all)."""
    if not wanted:
        return tuple(available)
    names = tuple(s.strip() for s in wanted.split(",") if s.strip())
    unknown = [s for s in names if s not in available]
    if unknown or not names:
        what = ", ".join(unknown) if unknown else repr(wanted)
        raise ConfigError(f"unknown stem(s) {what}: this model has {', '.join(available)}")
    return names


class _Aligner:
    """Drops the engine's first latency_samples and resamples back to the file's rate."""

    def __init__(self, skip: int, rate_model: int, rate_file: int, stems: int,
                 channels: int) -> None:
        self.skip = skip
        self.streams = ([soxr.ResampleStream(rate_model, rate_file, channels, dtype="float32")
                         for _ in range(stems)] if rate_model != rate_file else None)

    def __call__(self, y: np.ndarray, last: bool = False) -> np.ndarray:
        if self.skip:
            cut = min(self.skip, y.shape[1])
            y, self.skip = y[:, cut:], self.skip - cut
        if self.streams is None:
            return y
        parts = [s.resample_chunk(np.ascontiguousarray(ys), last=last)
                 for s, ys in zip(self.streams, y)]
        n = min(len(p) for p in parts)
        return np.stack([p[:n] for p in parts])


def separate_file(sep: Stream, path: Path, out_dir: Path, stems: tuple[str, ...],
                  fmt: str = "wav", subtype: str = "PCM_16", block: int = BLOCK,
                  progress: bool = True) -> FileResult:
    """Separate one file into ``out_dir/<song>/<stem>.<fmt>``; returns what was written."""
    f = open_input(path)
    with f:
        rate, channels, total = f.samplerate, f.channels, f.frames
        if channels > MAX_CHANNELS:
            raise AudioInputError(f"{path}: {channels} channels; at most {MAX_CHANNELS} "
                                  "are supported")
        song_dir = out_dir / path.stem
        _refuse_overwriting_input(path, song_dir, stems, fmt)
        index = [sep.stems.index(s) for s in stems]
        sep.prepare(sep.sample_rate, block, channels)
        to_model = (soxr.ResampleStream(rate, sep.sample_rate, channels, dtype="float32")
                    if rate != sep.sample_rate else None)
        align = _Aligner(sep.latency_samples, sep.sample_rate, rate, len(stems), channels)
        writer = StemWriter(song_dir, stems, rate, channels, fmt, subtype)
        written = 0
        start = time.perf_counter()
        bar = tqdm(total=total / rate, unit="s", desc=path.name, leave=False,
                   disable=not progress, file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s "
                              "[{elapsed}<{remaining}{postfix}]")

        def put(y: np.ndarray) -> None:
            nonlocal written
            n = min(y.shape[1], total - written)
            if n > 0:
                writer.write(y[:, :n])
                written += n

        try:
            for data in read_blocks(f, block, path):
                x = to_model.resample_chunk(data) if to_model else data
                put(align(sep.process(x)[index]))
                bar.update(len(data) / rate)
                bar.set_postfix_str(f"{(bar.n / max(time.perf_counter() - start, 1e-9)):.1f}x "
                                    "real time")
            if to_model:
                x = to_model.resample_chunk(np.zeros((0, channels), np.float32), last=True)
                put(align(sep.process(x)[index]))
            put(align(sep.flush()[index], last=True))
            if written < total:  # resampler rounding: at most a few samples
                put(np.zeros((len(stems), total - written, channels), np.float32))
            outputs = writer.commit()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
    return FileResult(path, outputs, total / rate, time.perf_counter() - start)


def _refuse_overwriting_input(path: Path, song_dir: Path, stems: tuple[str, ...],
                              fmt: str) -> None:
    src = path.resolve()
    for s in stems:
        if (song_dir / f"{s}.{fmt}").resolve() == src:
            raise ConfigError(f"{path}: an output would overwrite this input; choose another "
                              "--out folder")


def run_files(paths: Sequence[str], out: str, model: str | None, stems_arg: str | None,
              fmt: str, subtype: str, threads: int, progress: bool = True) -> int:
    """Separate every path; one bad file does not stop the others. Returns the exit code."""
    sep = load(model, threads=threads)
    stems = select_stems(sep.stems, stems_arg)
    out_dir = Path(out) / sep.card.name
    failures = 0
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        try:
            if p.stem in seen:
                raise ConfigError(f"{p}: same song name as {seen[p.stem]}; its stems would "
                                  "overwrite those (rename one)")
            seen[p.stem] = p
            res = separate_file(sep, p, out_dir, stems, fmt, subtype, progress=progress)
            print(f"{p}: {len(res.outputs)} stems -> {res.outputs[0].parent} "
                  f"({res.seconds:.1f} s of audio at {res.speed:.1f}x real time)")
        except RtsepError as e:
            failures += 1
            print(f"rtsep: error: {e}", file=sys.stderr)
    if failures:
        print(f"rtsep: {failures} of {len(paths)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0
