"""Training examples streamed from disk, and whole songs for evaluation.

``ExcerptSampler.sample(batch)`` builds each example from short partial reads (soundfile
seek/read, open files cached), so the data set need not fit in memory. Audio-level
augmentation: with probability ``remix_probability`` every stem comes from its own random song
and offset (stems remixed across songs), otherwise all stems come from one song at one offset;
a random gain per stem; one random channel per stem excerpt (channel swap) or the mid channel.
The mixture is always the sum of the chosen stems, so ``mix == stems.sum(axis=1)`` exactly.
A stem listed in a track's ``exclude_stems`` is never taken from that track.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from .musdb import DataLayoutError, Track

SAMPLE_RATE = 44100


class _FileCache:
    """Open SoundFile handles (LRU, at most ``max_open``) and frame counts of wav files."""

    def __init__(self, max_open: int = 128, sample_rate: int = SAMPLE_RATE):
        self.max_open = max_open
        self.sample_rate = sample_rate
        self._open: OrderedDict[Path, sf.SoundFile] = OrderedDict()
        self._frames: dict[Path, int] = {}

    def get(self, path: Path) -> sf.SoundFile:
        f = self._open.get(path)
        if f is not None:
            self._open.move_to_end(path)
            return f
        try:
            f = sf.SoundFile(str(path))
        except (OSError, RuntimeError) as e:
            raise DataLayoutError(f"cannot read {path}: {e}") from e
        if f.samplerate != self.sample_rate:
            f.close()
            raise DataLayoutError(f"{path}: {f.samplerate} Hz, expected {self.sample_rate} Hz")
        self._open[path] = f
        self._frames[path] = f.frames
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return f

    def frames(self, path: Path) -> int:
        if path not in self._frames:
            self.get(path)
        return self._frames[path]

    def read(self, path: Path, start: int, length: int) -> np.ndarray:
        """float32[length, channels], zero-padded past the end of the file."""
        f = self.get(path)
        f.seek(start)
        data = f.read(length, dtype="float32", always_2d=True)
        if len(data) < length:
            data = np.concatenate([data, np.zeros((length - len(data), f.channels), np.float32)])
        return data

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()


class ExcerptSampler:
    """Random mono training excerpts: ``sample(batch) -> (mix[b, l], stems[b, n_stems, l])``.

    Parameters: ``tracks`` (from musdb.load_tracks), ``stems`` (names, e.g. ("drums", "bass",
    "other")), ``length`` in samples, ``seed``, ``gain_range`` (uniform per stem), ``gain_db``
    (if given, per-stem gains log-uniform within +-``gain_db`` dB instead: level balances far
    from the training songs' own), ``remix_probability``, ``channel`` ("random": one channel
    picked at random, "mid": the mean of the channels), ``silence_rms`` (an excerpt quieter
    than this RMS counts as silent), ``keep_silent`` (probability of keeping a silent stem
    excerpt instead of drawing again, at most ``max_tries`` draws). Safe to call from several
    threads (calls serialize).
    """

    def __init__(
        self,
        tracks: Sequence[Track],
        stems: Sequence[str],
        length: int,
        seed: int = 0,
        gain_range: tuple[float, float] = (0.5, 1.5),
        gain_db: float | None = None,
        remix_probability: float = 0.5,
        channel: str = "random",
        silence_rms: float = 1e-3,
        keep_silent: float = 0.1,
        max_tries: int = 10,
        max_open: int = 128,
        sample_rate: int = SAMPLE_RATE,
    ):
        if length <= 0:
            raise ValueError(f"length must be > 0, got {length}")
        if channel not in ("random", "mid"):
            raise ValueError(f"channel must be 'random' or 'mid', got {channel!r}")
        if not tracks:
            raise DataLayoutError("no tracks to sample from")
        self.tracks = list(tracks)
        self.stems = tuple(stems)
        self.length = int(length)
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.gain_db = None if gain_db is None else float(gain_db)
        self.remix_probability = float(remix_probability)
        self.channel = channel
        self.silence_rms = float(silence_rms)
        self.keep_silent = float(keep_silent)
        self.max_tries = max(1, int(max_tries))
        self.rng = np.random.default_rng(seed)
        self._cache = _FileCache(max_open, sample_rate)
        self._lock = threading.Lock()
        # tracks allowed for each stem, and tracks that can give every stem at once
        self._by_stem = {s: [t for t in self.tracks if t.usable(s)] for s in self.stems}
        for s, ts in self._by_stem.items():
            if not ts:
                raise DataLayoutError(
                    f"no track has a usable {s!r} stem (found stems: "
                    f"{sorted({x for t in self.tracks for x in t.stems})})"
                )
        self._frames = {id(t): self._track_frames(t) for t in self.tracks}

    def _track_frames(self, track: Track) -> int:
        paths = [track.paths[s] for s in self.stems if s in track.paths]
        return min((self._cache.frames(p) for p in paths), default=0)

    def close(self) -> None:
        self._cache.close()

    def _offset(self, track: Track) -> int:
        return int(self.rng.integers(0, max(1, self._frames[id(track)] - self.length + 1)))

    def _read_mono(self, track: Track, stem: str, offset: int, channel: int | None) -> np.ndarray:
        data = self._cache.read(track.paths[stem], offset, self.length)
        if self.channel == "mid" or data.shape[1] == 1:
            return data.mean(axis=1)
        return np.ascontiguousarray(data[:, (channel or 0) % data.shape[1]])

    def _silent(self, x: np.ndarray) -> bool:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) < self.silence_rms

    def _retry(self) -> bool:
        return self.rng.random() >= self.keep_silent

    def _draw_stem(self, stem: str) -> np.ndarray:
        """One stem excerpt from a random allowed track (remix mode)."""
        x = np.zeros(self.length, np.float32)
        for _ in range(self.max_tries):
            tracks = self._by_stem[stem]
            track = tracks[int(self.rng.integers(len(tracks)))]
            x = self._read_mono(track, stem, self._offset(track), int(self.rng.integers(2)))
            if not self._silent(x) or not self._retry():
                break
        return x

    def _draw_song(self) -> list[np.ndarray]:
        """All stems from one track at one offset and channel (stems that track may not give
        are drawn from other tracks)."""
        xs: list[np.ndarray] = []
        for _ in range(self.max_tries):
            track = self.tracks[int(self.rng.integers(len(self.tracks)))]
            offset, channel = self._offset(track), int(self.rng.integers(2))
            xs = [
                self._read_mono(track, s, offset, channel) if track.usable(s) else None
                for s in self.stems
            ]
            if any(x is not None and self._silent(x) for x in xs) and self._retry():
                continue
            break
        return [x if x is not None else self._draw_stem(s) for x, s in zip(xs, self.stems)]

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``batch`` examples: mix float32[batch, length], stems float32[batch, n, length]."""
        with self._lock:
            out = np.zeros((batch, len(self.stems), self.length), np.float32)
            for b in range(batch):
                if self.rng.random() < self.remix_probability:
                    xs = [self._draw_stem(s) for s in self.stems]
                else:
                    xs = self._draw_song()
                if self.gain_db is None:
                    gains = self.rng.uniform(*self.gain_range, size=len(self.stems))
                else:
                    db = self.rng.uniform(-self.gain_db, self.gain_db, size=len(self.stems))
                    gains = 10.0 ** (db / 20.0)
                for i, (x, g) in enumerate(zip(xs, gains)):
                    out[b, i] = x * np.float32(g)
            mix = out.sum(axis=1)
            return mix, out


def load_song(
    track: Track, stems: Sequence[str], sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, np.ndarray]:
    """A whole song for evaluation: (mix float32[frames, channels], stems float32[n_stems,
    frames, channels]). ``mix`` is the track's mixture.wav (for MUSDB18-HQ it holds every
    source, vocals too). A missing stem or mixture raises DataLayoutError; files of unequal
    length are cut to the shortest."""
    missing = [s for s in ("mixture", *stems) if s not in track.paths]
    if missing:
        raise DataLayoutError(
            f"track {track.name} ({track.folder}) has no {missing[0]}.wav; "
            f"found {', '.join(sorted(track.paths))}"
        )
    arrays = []
    for name in ("mixture", *stems):
        try:
            data, sr = sf.read(str(track.paths[name]), dtype="float32", always_2d=True)
        except (OSError, RuntimeError) as e:
            raise DataLayoutError(f"cannot read {track.paths[name]}: {e}") from e
        if sr != sample_rate:
            raise DataLayoutError(f"{track.paths[name]}: {sr} Hz, expected {sample_rate} Hz")
        arrays.append(data)
    channels = {a.shape[1] for a in arrays}
    if len(channels) != 1:
        raise DataLayoutError(f"track {track.name}: files differ in channel count {channels}")
    n = min(len(a) for a in arrays)
    mix = arrays[0][:n]
    stem_arr = np.stack([a[:n] for a in arrays[1:]]) if stems else np.zeros((0, n, mix.shape[1]))
    return mix, stem_arr.astype(np.float32, copy=False)
