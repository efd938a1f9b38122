"""Reading and writing audio files blockwise, safely.

Inputs are opened read-only and checked before any work (exists, decodable, not empty, channel
count). Outputs go to ``<final>.part`` and are renamed only when every stem is complete, so an
interrupted or failed run never leaves a file that looks finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioInputError, AudioOutputError

FORMATS = {"wav": "WAV", "flac": "FLAC"}
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def open_input(path: str | Path) -> sf.SoundFile:
    """Open an audio file for blockwise reading; one-line AudioInputError on any problem."""
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: file not found")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a folder, not an audio file")
    try:
        f = sf.SoundFile(str(path), "r")
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioInputError(f"{path}: cannot read audio ({_first_line(e)})") from None
    except OSError as e:
        raise AudioInputError(f"{path}: cannot open ({e.strerror or e})") from None
    if f.frames <= 0:
        f.close()
        raise AudioInputError(f"{path}: contains no audio (0 frames)")
    return f


def read_blocks(f: sf.SoundFile, block: int, path: str | Path) -> Iterator[np.ndarray]:
    """Yield float32[frames, channels] blocks, refusing NaN/Inf and decoding errors."""
    pos = 0
    while True:
        try:
            data = f.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioInputError(f"{path}: cannot decode audio after frame {pos} "
                                  f"({_first_line(e)})") from None
        if len(data) == 0:
            return
        if not np.isfinite(data).all():
            bad = int(np.argwhere(~np.isfinite(data))[0, 0])
            raise AudioInputError(f"{path}: NaN or Inf sample at frame {pos + bad}")
        pos += len(data)
        yield data


class StemWriter:
    """Writes one file per stem under temporary names; :meth:`commit` renames them all."""

    def __init__(self, folder: Path, stems: tuple[str, ...], sample_rate: int, channels: int,
                 fmt: str, subtype: str) -> None:
        self.finals = [folder / f"{s}.{fmt}" for s in stems]
        self.parts = [p.with_name(p.name + ".part") for p in self.finals]
        self._files: list[sf.SoundFile] = []
        self._folder = folder
        self._created = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for p in self.parts:
                self._files.append(sf.SoundFile(str(p), "w", samplerate=sample_rate,
                                                channels=channels, format=FORMATS[fmt],
                                                subtype=subtype))
        except (OSError, sf.LibsndfileError, RuntimeError) as e:
            self.abort()
            msg = getattr(e, "strerror", None) or _first_line(e)
            raise AudioOutputError(f"{folder}: cannot write output ({msg})") from None

    def write(self, stems: np.ndarray) -> None:
        """stems float32[stems, frames, channels]."""
        try:
            for f, s in zip(self._files, stems):
                f.write(s)
        except (OSError, sf.LibsndfileError, RuntimeError) as e:
            raise AudioOutputError(f"cannot write output ({_first_line(e)})") from None

    def commit(self) -> list[Path]:
        for f in self._files:
            f.close()
        for part, final in zip(self.parts, self.finals):
            os.replace(part, final)
        return self.finals

    def abort(self) -> None:
        """Close and delete the temporary files: nothing partial stays behind."""
        for f in self._files:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        for p in self.parts:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        if self._created:
            try:
                self._folder.rmdir()  # only if it is empty: never delete what we did not make
            except OSError:
                pass
