"""The streaming separation engine: one ``Separator`` for file and live mode.

Plugin-style contract (DESIGN.md section 2)::

    sep = Separator.load("seed-openmsx")          # or a .tflite; engine.load: also ensembles
    sep.prepare(44100, max_block=512, channels=2)  # allocates every buffer
    out = sep.process(block)                       # block float32[frames, channels]
    sep.process_into(block, out)                   # out float32[stems, frames, channels]
    tail = sep.flush()                             # the last latency_samples of output
    sep.reset()

Output sample n is input sample n - latency_samples, for any block size (the first
latency_samples outputs are silence). Samples flow: input ring (numba) -> every F hops one
window of ``context`` frames per channel is gathered into the model's batch -> TFLite invoke ->
the F output frames per stem are windowed and overlap-added into an output ring -> emitted.
A stateful model takes only its F new frames per invoke and carries the past in its state, so
its invokes run in stream order, one per F hops (batched over channels only).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels, modelcard
from .errors import ConfigError, ModelError
from .framing import latency_terms, synthesis_window
from .modelcard import ModelCard
from .ring import RingBuffer, next_pow2
from .runtime import ModelRunner

MAX_CHANNELS = 8
#: Windows per invoke for large blocks (file mode); small blocks invoke one window at a time.
BULK_WINDOWS = 16


class Stream:
    """What every separator offers on top of its ``prepare``, ``process_into`` and ``reset``:
    blocks of any length, the flush of the last ``latency_samples``, whole signals. A subclass
    sets ``_channels``, ``_max_block``, ``_latency`` and ``_flush_in`` (``latency_samples``
    frames of silence) in ``prepare``."""

    card: Any  # a ModelCard, or an ensemble's EnsembleCard: name, path, sha256, live_block
    _prepared: bool = False
    _channels: int
    _max_block: int
    _latency: int
    _flush_in: np.ndarray

    @property
    def stems(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def sample_rate(self) -> int:
        raise NotImplementedError

    @property
    def latency_samples(self) -> int:
        return self._latency

    @property
    def channels(self) -> int:
        self._require_prepared()
        return self._channels

    @property
    def max_block(self) -> int:
        self._require_prepared()
        return self._max_block

    def prepare(self, sample_rate: int, max_block: int, channels: int) -> Stream:
        raise NotImplementedError

    def process_into(self, block: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def _require_prepared(self) -> None:
        if not self._prepared:
            raise ConfigError("call prepare(sample_rate, max_block, channels) first")

    def _fits(self, block: np.ndarray, out: np.ndarray) -> int:
        """The frames of ``block`` for ``process_into``, or a ConfigError if it or ``out``
        does not fit the prepared size."""
        n = block.shape[0]
        if n > self._max_block:
            raise ConfigError(f"block of {n} frames exceeds max_block {self._max_block}")
        if out.shape[1] != n:
            raise ConfigError(f"out has {out.shape[1]} frames, block has {n}")
        return n

    def process(self, block: np.ndarray) -> np.ndarray:
        """Separate ``block`` float32[frames, channels] (float64 is converted) of any length;
        returns a new array float32[stems, frames, channels]. Allocates: not for callbacks."""
        self._require_prepared()
        block = checked_block(block, self._channels, convert=True)
        out = np.empty((len(self.stems), block.shape[0], self._channels), dtype=np.float32)
        for start in range(0, block.shape[0], self._max_block):
            stop = min(start + self._max_block, block.shape[0])
            self.process_into(block[start:stop], out[:, start:stop])
        return out

    def flush(self) -> np.ndarray:
        """Return the last ``latency_samples`` of output (feeds silence), then reset: the
        separator is ready for a new stream."""
        self._require_prepared()
        out = np.empty((len(self.stems), self._latency, self._channels), np.float32)
        for start in range(0, self._latency, self._max_block):
            stop = min(start + self._max_block, self._latency)
            self.process_into(self._flush_in[start:stop], out[:, start:stop])
        self.reset()
        return out

    def separate(self, audio: np.ndarray, block: int = 65536,
                 on_block: Callable[[int], None] | None = None) -> np.ndarray:
        """Offline convenience: the stems of a whole signal float32[frames, channels], aligned
        with it (the latency removed) and of its length: float32[stems, frames, channels].
        The same samples ``rtsep file`` writes at the model's rate (before quantisation).
        Prepares the separator for ``block`` frames of the signal's channels."""
        n, channels = audio.shape
        self.prepare(self.sample_rate, block, channels)
        parts = []
        for start in range(0, n, block):
            part = audio[start:start + block]
            parts.append(self.process(part))
            if on_block:
                on_block(len(part))
        parts.append(self.flush())
        return np.concatenate(parts, axis=1)[:, self._latency:self._latency + n]


def checked_block(block: np.ndarray, channels: int, convert: bool) -> np.ndarray:
    """``block`` as C-contiguous float32[frames, channels], or a ConfigError saying why not."""
    if not isinstance(block, np.ndarray):
        raise ConfigError(f"block must be a numpy array, got {type(block).__name__}")
    if block.ndim != 2 or block.shape[1] != channels:
        raise ConfigError(f"block must be float32[frames, {channels}] "
                          f"(frames, channels), got shape {block.shape}")
    if block.dtype == np.float64 and convert:
        block = block.astype(np.float32)
    if block.dtype != np.float32:
        raise ConfigError(f"block must be float32 (or float64 for process()), "
                          f"got {block.dtype}")
    return np.ascontiguousarray(block)


def load(model: str | Path | None = None, threads: int = 1, live: bool = False) -> Stream:
    """A shipped model or ensemble by name, a .tflite path or an ensemble card
    (``rtsep.ensemble``), or the default (None): the file default, or with ``live`` the
    low-latency live default. What every command separates with."""
    path = modelcard.resolve(model, live)
    if path.name.endswith(modelcard.ENSEMBLE_SUFFIX):
        from .ensemble import load_ensemble

        return load_ensemble(path, threads=threads)
    if path.suffix == ".json":
        raise ModelError(f"{path}: give the model's .tflite (or an ensemble card, "
                         f"*{modelcard.ENSEMBLE_SUFFIX}), not its card")
    return Separator.load(path, threads=threads)


class Separator(Stream):
    """Separates audio into the model's stems, streaming, with a constant latency."""

    def __init__(self, card: ModelCard, model_bytes: bytes, threads: int = 1) -> None:
        self.card = card
        self._bytes = model_bytes
        self._threads = threads
        self._prepared = False
        self._latency_terms = latency_terms(card.hop, card.lookahead_frames, card.out_frames,
                                            card.frame)
        self._latency = sum(self._latency_terms.values())  # read on every block: computed once
        # Fail on a broken graph now, before any audio is read.
        ModelRunner(card, model_bytes, batch=1, threads=threads)

    @classmethod
    def load(cls, model: str | Path | None = None, threads: int = 1,
             live: bool = False) -> Separator:
        """Load a shipped model by name, a .tflite path, or the default (None) when it is a
        single model (with ``live``, the low-latency live default); ensembles, the file
        default among them, load with ``rtsep.engine.load``."""
        path = modelcard.resolve(model, live)
        if path.name.endswith(modelcard.ENSEMBLE_SUFFIX):
            raise ModelError(f"{path.name} is an ensemble card: load it with "
                             "rtsep.engine.load")
        card = modelcard.read_card(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"{path}: cannot read model ({e.strerror})") from None
        return cls(card, data, threads=threads)

    # -- what the model is -------------------------------------------------------------
    @property
    def stems(self) -> tuple[str, ...]:
        return self.card.stems

    @property
    def sample_rate(self) -> int:
        return self.card.sample_rate

    @property
    def latency_terms(self) -> dict[str, int]:
        """The algorithmic latency in samples, term by term (they add up)."""
        return dict(self._latency_terms)

    # -- the processor contract --------------------------------------------------------
    def prepare(self, sample_rate: int, max_block: int, channels: int) -> Separator:
        """Allocate every buffer for blocks of up to ``max_block`` frames of ``channels``."""
        c = self.card
        if sample_rate != c.sample_rate:
            raise ConfigError(f"model {c.name} runs at {c.sample_rate} Hz, got {sample_rate} Hz "
                              "(resample first)")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ConfigError(f"channels must be 1 to {MAX_CHANNELS}, got {channels}")
        if max_block < 1:
            raise ConfigError(f"max_block must be >= 1, got {max_block}")
        hop, frame = c.hop, c.frame
        self._channels, self._max_block = channels, max_block
        self._advance = c.out_frames * hop  # new samples per window
        self._window = synthesis_window(hop, frame)
        self._in = RingBuffer(next_pow2(max_block + self._advance), channels)
        self._fresh = np.zeros((self._advance, channels), dtype=np.float32)
        self._hist = np.zeros((channels, (c.context_frames - 1) * hop + frame), np.float32)
        # At most ceil(max_block / advance) windows fall due in one call (fewer than `advance`
        # samples wait in the ring between calls); a larger batch would compute empty slots.
        windows_per_block = -(-max_block // self._advance)
        self._bulk = 1 if c.stateful else min(BULK_WINDOWS, windows_per_block)
        self._runners = {1: ModelRunner(c, self._bytes, channels, self._threads)}
        if self._bulk > 1:
            self._runners[self._bulk] = ModelRunner(c, self._bytes, channels * self._bulk,
                                                     self._threads)
        span = self.latency_samples + max_block + 2 * frame + 2 * self._advance
        self._ola = np.zeros((len(c.stems), channels, next_pow2(span)), dtype=np.float32)
        self._flush_in = np.zeros((self.latency_samples, channels), dtype=np.float32)
        self._first_frames = np.zeros(self._bulk, dtype=np.int64)
        self._prepared = True
        self.reset()
        return self

    def reset(self) -> None:
        """Forget all past input: the next sample is treated as the start of a stream."""
        self._require_prepared()
        self._in.reset()
        self._hist[:] = 0.0
        self._ola[:] = 0.0
        for runner in self._runners.values():
            runner.reset_state()
        self._received = 0  # input samples seen
        self._windows = 0  # windows gathered so far

    def process_into(self, block: np.ndarray, out: np.ndarray) -> None:
        """Separate ``block`` float32[frames <= max_block, channels] into ``out``
        float32[stems, frames, channels] (any strides). Allocates nothing: for callbacks."""
        n = self._fits(block, out)
        if self._in.write(block) != n:  # cannot happen: capacity >= max_block + advance
            raise RuntimeError("internal error: input ring overflow, please report")
        self._run_due_windows()
        kernels.emit(self._ola, self._received - self._latency, out, n)
        self._received += n

    # -- internals ---------------------------------------------------------------------
    def _run_due_windows(self) -> None:
        """Gather every window whose samples have all arrived, invoke in batches, overlap-add.

        One due window (live blocks) uses the batch-of-one interpreter; more (file blocks) use
        the bulk one, BULK_WINDOWS windows per invoke."""
        c = self.card
        due = self._in.read_available // self._advance
        if due == 0:
            return
        runner = self._runners[self._bulk if due > 1 else 1]
        per_invoke = runner.batch // self._channels
        pending = 0
        for _ in range(due):
            self._in.read(self._fresh)
            kernels.shift_in(self._hist, self._fresh, self._advance)
            self._windows += 1
            newest = self._windows * c.out_frames - 1  # global index of the newest frame
            first = newest - c.lookahead_frames - c.out_frames + 1
            # All its output frames lie before the stream: silence, skip it; a stateful model
            # runs anyway, since its state must see every frame.
            if first + c.out_frames <= 0 and not c.stateful:
                continue
            view = runner.input_view()
            kernels.gather_windows(self._hist, c.hop, view, pending * self._channels)
            del view
            self._first_frames[pending] = first
            pending += 1
            if pending == per_invoke:
                self._invoke(runner, pending)
                pending = 0
        if pending:
            self._invoke(runner, pending)

    def _invoke(self, runner: ModelRunner, count: int) -> None:
        runner.invoke()
        y = runner.output_view()
        for w in range(count):
            kernels.overlap_add(y, w * self._channels, self._channels, int(self._first_frames[w]),
                                self.card.hop, self._window, self._ola)
        del y
