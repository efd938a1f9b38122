"""``rtsep live``: separate a live input (or a file played as if live) and play a remix.

Threads and what they may do:

- the PortAudio callback (:meth:`LivePath.callback`): the whole real-time path. It reads the
  next block (the input device's, or the preloaded file's), runs ``Separator.process_into``,
  delays the input for bypass, remixes into the output, packs input + stems into the record
  ring, and counts status flags and its own processing time. Everything it touches is
  allocated before the stream starts; its kernels are numba functions compiled at import with
  explicit signatures; it never blocks, never touches a file and never prints.
- the recorder thread (:class:`Recorder`): drains the record ring into ``.part`` files, renamed
  when the run ends (:class:`rtsep.audio_io.StemWriter`).
- the main thread: keyboard (when stdin is a terminal), the status line (when stderr is one),
  the end of the run (``--duration``, end of file, ``q``, Ctrl-C), and the summary.

With a file as input the callback reads block after block from memory, so what is separated
and recorded does not depend on the device's timing (a missed cycle delays it, never changes
it). A device whose rate differs from the model's is refused with the rate to set: resampling
in the callback would allocate and vary the block length (a file input is resampled up front).
The default block is the model card's ``live_block`` (the smallest block at which that model
measured zero late blocks in stereo on our 2-core machine), else 64 frames (DEFAULT_BLOCK),
the period a low-latency JACK server runs at.
A larger block does not buy time on JACK: PortAudio runs the callback for a block of B frames
inside one server period, so the real deadline stays one period (measured with
``rtsep bench --live``). When the block is smaller than out_frames*hop, the model runs in one
callback out of out_frames*hop/block; that callback's compute is what must fit in the period,
and late blocks count exactly that.
"""

from __future__ import annotations

import gc
import math
import os
import select
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from . import devices
from .audio_io import StemWriter, open_input, read_blocks
from .engine import Stream, load
from .errors import AudioOutputError, ConfigError, DeviceError, RtsepError
from .remix import DelayLine, Remix, parse_gain
from .ring import RingBuffer, next_pow2

MAX_BLOCK = 8192
RECORD_SECONDS = 4.0  # record ring capacity: how far the writer thread may fall behind
STATUS_EVERY = 0.25  # seconds between status line refreshes
STALL_SECONDS = 2.0  # no callback for this long: the server or device is gone
HIST_US = 10  # callback-time histogram bin width (microseconds)
HIST_BINS = 10000  # up to 100 ms; the last bin takes everything slower
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3", ".opus", ".au",
                  ".caf", ".w64", ".rf64"}

# Indices into LivePath.counters (int64).
BLOCKS, FRAMES, LATE, XRUNS, IN_UNDER, IN_OVER, OUT_UNDER, OUT_OVER, REC_DROPPED, SUM_NS, \
    MAX_NS = range(11)


@numba.njit("void(int64[::1], int64[::1], int64, float64, float64)", cache=True, nogil=True)
def tally(counters, hist, frames, elapsed, budget):  # pragma: no cover - jitted
    """Count one callback: blocks, frames, late (elapsed > budget), time sum/max, histogram."""
    counters[BLOCKS] += 1
    counters[FRAMES] += frames
    if elapsed > budget:
        counters[LATE] += 1
    ns = np.int64(elapsed * 1e9)
    counters[SUM_NS] += ns
    if ns > counters[MAX_NS]:
        counters[MAX_NS] = ns
    b = min(np.int64(elapsed * 1e6 / HIST_US), HIST_BINS - 1)
    hist[b] += 1


@numba.njit("void(float32[:, ::1], int64, float32[:, ::1], int64)", cache=True, nogil=True)
def copy_rows(src, pos, dst, n):  # pragma: no cover - jitted
    """dst[:n] = src[pos:pos + n], zeros past the end of src (a file played as input)."""
    total, ch = src.shape
    for i in range(n):
        k = pos + i
        if k < total:
            for c in range(ch):
                dst[i, c] = src[k, c]
        else:
            for c in range(ch):
                dst[i, c] = 0.0


@numba.njit("void(float32[:, ::1], float32[:, :, ::1], int64, int64, float32[:, ::1])",
            cache=True, nogil=True)
def pack(inp, stems, nstems, n, dst):  # pragma: no cover - jitted
    """dst[i] = [input channels..., stem 0 channels..., stem 1 ...] for i < n (record ring)."""
    ch = inp.shape[1]
    for i in range(n):
        for c in range(ch):
            dst[i, c] = inp[i, c]
        for s in range(nstems):
            for c in range(ch):
                dst[i, (s + 1) * ch + c] = stems[s, i, c]


class LivePath:
    """Everything the audio callback touches, allocated before the stream starts.

    ``source``: a file's samples float32[frames, channels] at the model's rate, or None for a
    device input. ``total``: frames to play before the path finishes (None: until stopped).
    ``record``: the ring that :class:`Recorder` drains, or None."""

    def __init__(self, sep: Stream, remix: Remix, channels: int, block: int,
                 source: np.ndarray | None = None, total: int | None = None,
                 record: RingBuffer | None = None) -> None:
        if not 1 <= block <= MAX_BLOCK:
            raise ConfigError(f"block must be 1 to {MAX_BLOCK} frames, got {block}")
        self.sep, self.remix = sep, remix
        self.block, self.channels = block, channels
        self.rate = sep.sample_rate
        self.nstems = len(sep.stems)
        sep.prepare(self.rate, block, channels)
        self.source = None if source is None else np.ascontiguousarray(source, np.float32)
        self.total = total
        self.delay = DelayLine(sep.latency_samples, channels, block)
        self._in = np.zeros((block, channels), np.float32)
        self._src = np.zeros((self.nstems + 1, block, channels), np.float32)
        self._stems = self._src[: self.nstems]  # C-contiguous views, made once
        self._dry = self._src[self.nstems]
        self.record = record
        self._rec = (np.zeros((block, (self.nstems + 1) * channels), np.float32)
                     if record is not None else None)
        self.counters = np.zeros(11, np.int64)
        self.hist = np.zeros(HIST_BINS, np.int64)
        self.pos = 0  # frames taken from the input so far
        self._left = total if total is not None else 1 << 62  # written by the callback only
        self._stopped = False  # written by other threads only
        self.error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self._left <= 0 or self._stopped

    def stop(self) -> None:
        """Make the callback play silence from its next block on (any thread)."""
        self._stopped = True

    def warm_up(self, blocks: int = 32) -> None:
        """Run the whole path on silence so the first real blocks pay no first-call costs
        (TFLite/XNNPACK setup, caches), then reset every state to a clean start."""
        silence = np.zeros((self.block, self.channels), np.float32)
        out = np.zeros((self.block, 2), np.float32)
        saved = self._left, self.record, self.source
        self.record, self.source = None, None
        try:
            for _ in range(blocks):
                self._process(silence, out, self.block)
        finally:
            self._left, self.record, self.source = saved
        self.sep.reset()
        self.delay.reset()
        self.remix.take_peaks()
        self.pos = 0
        self.counters[:] = 0
        self.hist[:] = 0

    # -- the real-time path ---------------------------------------------------------------
    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any,
                 status: Any) -> None:
        """sounddevice Stream callback (device input)."""
        self._timed(indata, outdata, frames, status)

    def out_callback(self, outdata: np.ndarray, frames: int, time_info: Any,
                     status: Any) -> None:
        """sounddevice OutputStream callback (file input)."""
        self._timed(None, outdata, frames, status)

    def _timed(self, indata: np.ndarray | None, outdata: np.ndarray, frames: int,
               status: Any) -> None:
        """Count the status flags, run one block, and time it against its duration."""
        t0 = time.perf_counter()
        if status:
            self._flags(status)
        if self._process(indata, outdata, frames):
            tally(self.counters, self.hist, frames, time.perf_counter() - t0,
                  frames / self.rate)

    def _process(self, indata: np.ndarray | None, outdata: np.ndarray, frames: int) -> bool:
        """One block through the path; False (and silence) once finished."""
        try:
            if self._left <= 0 or self._stopped or frames > self.block:
                outdata.fill(0.0)
                if frames > self.block:  # PortAudio promised fixed blocks: a bug, stop
                    raise RuntimeError(f"callback got {frames} frames, block is {self.block}")
                return False
            full = frames == self.block
            inb = self._in if full else self._in[:frames]
            if self.source is not None:
                copy_rows(self.source, self.pos, self._in, frames)
            else:
                np.copyto(inb, indata)
            self.sep.process_into(inb, self._stems if full else self._stems[:, :frames])
            self.delay.process(inb, self._dry if full else self._dry[:frames])
            self.remix.process(self._src, outdata, frames)
            if self.record is not None:
                keep = min(frames, self._left)
                pack(self._in, self._src, self.nstems, keep, self._rec)
                written = self.record.write(self._rec if keep == self.block
                                            else self._rec[:keep])
                if written < keep:
                    self.counters[REC_DROPPED] += keep - written
            self.pos += frames
            self._left -= frames
            return True
        except BaseException as e:  # noqa: BLE001 - never let PortAudio swallow it silently
            outdata.fill(0.0)
            self.error = e
            self._stopped = True
            return False

    def _flags(self, status: Any) -> None:
        c = self.counters
        flags = (status.input_underflow, status.input_overflow, status.output_underflow,
                 status.output_overflow)
        c[XRUNS] += any(flags)  # one event, however many flags: JACK's PortAudio sets two
        c[IN_UNDER] += flags[0]
        c[IN_OVER] += flags[1]
        c[OUT_UNDER] += flags[2]
        c[OUT_OVER] += flags[3]

    # -- read by the main thread ----------------------------------------------------------
    @property
    def xruns(self) -> int:
        """Callbacks that came with any under/overflow flag set."""
        return int(self.counters[XRUNS])

    def timing_us(self) -> dict[str, float]:
        """Callback processing time: mean, p99 (histogram resolution) and max, microseconds."""
        blocks = int(self.counters[BLOCKS])
        if blocks == 0:
            return {"mean": 0.0, "p99": 0.0, "max": 0.0}
        cum = np.cumsum(self.hist)
        p99_bin = int(np.searchsorted(cum, math.ceil(0.99 * blocks)))
        return {"mean": self.counters[SUM_NS] / blocks / 1e3,
                "p99": (p99_bin + 1) * HIST_US,
                "max": self.counters[MAX_NS] / 1e3}


class Recorder:
    """Writes input + stems from the record ring to ``folder`` in a thread of its own."""

    def __init__(self, folder: Path, stems: tuple[str, ...], sample_rate: int, channels: int,
                 seconds: float = RECORD_SECONDS) -> None:
        if "input" in stems:
            raise ConfigError("this model has a stem named 'input', which --record uses for "
                              "the input file")
        self.names = ("input", *stems)
        self.channels = channels
        self.ring = RingBuffer(next_pow2(int(seconds * sample_rate)),
                               len(self.names) * channels)
        self.writer = StemWriter(folder, self.names, sample_rate, channels, "wav", "FLOAT")
        self._chunk = np.zeros((8192, len(self.names) * channels), np.float32)
        self._stop = threading.Event()
        self.error: RtsepError | None = None
        self.frames = 0
        self._thread = threading.Thread(target=self._loop, name="rtsep-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drain(self) -> int:
        n = self.ring.read(self._chunk)
        if n and self.error is None:
            data = self._chunk[:n].reshape(n, len(self.names), self.channels)
            try:
                self.writer.write(np.ascontiguousarray(data.transpose(1, 0, 2)))
                self.frames += n
            except AudioOutputError as e:
                self.error = e
        return n

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            while self._drain():
                pass

    def finish(self) -> list[Path]:
        """Stop the thread, write what is left, rename the files into place."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        while self._drain():
            pass
        if self.error is not None:
            self.writer.abort()
            raise self.error
        return self.writer.commit()

    def abort(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.writer.abort()


# -- the command -----------------------------------------------------------------------------

@dataclass
class LiveOptions:
    """The options of ``rtsep live`` (see ``rtsep live --help``)."""

    inp: str = "mic"
    out: str = "speakers"
    model: str | None = None
    solo: list[str] = field(default_factory=list)
    mute: list[str] = field(default_factory=list)
    gains: list[str] = field(default_factory=list)
    record: str | None = None
    duration: float | None = None
    block: int | None = None
    latency: str = "low"
    verbose: bool = False


DEFAULT_BLOCK = 64


def is_file_spec(spec: str) -> bool:
    """Whether ``--in`` names a file rather than a device: an existing file, or something
    that looks like a path (a separator or an audio suffix) so a missing file is reported
    as a missing file, not as an unknown device."""
    p = Path(spec)
    if p.is_file():
        return True
    return os.sep in spec or p.suffix.lower() in AUDIO_SUFFIXES


def load_file(path: str, rate: int) -> np.ndarray:
    """The whole file as float32[frames, channels] at ``rate`` (soxr, before the start)."""
    f = open_input(path)
    with f:
        if f.channels > 2:
            raise ConfigError(f"{path}: {f.channels} channels; live mode plays mono or stereo")
        file_rate = f.samplerate
        x = np.concatenate(list(read_blocks(f, 1 << 16, path)))
    if file_rate != rate:
        import soxr

        x = soxr.resample(x, file_rate, rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(x, np.float32)


def parse_latency(text: str) -> str | float:
    """``low``, ``high`` or seconds, as sounddevice takes it."""
    if text in ("low", "high"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise ConfigError(f"--latency must be low, high or seconds > 0, got {text!r}")
    return value


def _ms(samples: float, rate: int) -> str:
    return f"{samples} samples ({1000.0 * samples / rate:.2f} ms)"


def _device_latency(stream: Any, duplex: bool) -> tuple[float, float]:
    lat = stream.latency
    return (float(lat[0]), float(lat[1])) if duplex else (0.0, float(lat))


class Console:
    """Keyboard (stdin a terminal: cbreak mode, restored at exit) and the status line
    (stderr a terminal: one line rewritten in place)."""

    def __init__(self) -> None:
        self.keys = sys.stdin is not None and sys.stdin.isatty()
        self.status = sys.stderr.isatty()
        self._saved: Any = None

    def __enter__(self) -> Console:
        if self.keys:
            import termios
            import tty

            fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
        if self.status:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def read(self, timeout: float) -> str:
        """Keys typed so far, waiting at most ``timeout`` seconds."""
        if not self.keys:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        return os.read(sys.stdin.fileno(), 64).decode(errors="ignore") if ready else ""

    def show(self, line: str) -> None:
        if self.status:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r" + line[:width].ljust(width))
            sys.stderr.flush()


def _meter(peak: float, width: int = 8) -> str:
    db = 20.0 * math.log10(peak) if peak > 1e-9 else -120.0
    filled = max(0, min(width, round((db + 48.0) / 48.0 * width)))
    return "#" * filled + "-" * (width - filled)


def status_line(path: LivePath, remix: Remix, cpu: float, latency_ms: float) -> str:
    """Stems with level meters, CPU load, xruns, late blocks and the latency."""
    peaks = remix.take_peaks()
    parts = []
    for i, name in enumerate(remix.stems):
        gain = f" {remix.gain_db[i]:+g}dB" if remix.gain_db[i] else ""
        state = "[off]" if not remix.enabled[i] else f"[{_meter(float(peaks[i]))}]"
        parts.append(f"{i + 1}:{name}{gain} {state}")
    head = "BYPASS " if remix.bypass else ""
    return (f"{head}{' '.join(parts)} | out [{_meter(float(peaks[-1]))}] | cpu {100 * cpu:.0f}%"
            f" | xruns {path.xruns} | late {int(path.counters[LATE])} | "
            f"latency {latency_ms:.1f} ms")


def run_live(opts: LiveOptions) -> int:
    """Run ``rtsep live``; returns the exit code. Validation first, then devices, then audio."""
    if opts.duration is not None and not opts.duration > 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {opts.duration}")
    latency_arg = parse_latency(opts.latency)
    # quiet: the runtime mutes LiteRT's banner
    sep = load(opts.model, threads=1, live=True)
    rate, stems = sep.sample_rate, sep.stems
    gains = dict(parse_gain(g, stems) for g in opts.gains)
    remix = Remix(stems, rate, solo=opts.solo, mute=opts.mute, gains_db=gains)
    block = opts.block if opts.block is not None else (sep.card.live_block or DEFAULT_BLOCK)
    if not 1 <= block <= MAX_BLOCK:
        raise ConfigError(f"--block must be 1 to {MAX_BLOCK} frames, got {block}")

    source = load_file(opts.inp, rate) if is_file_spec(opts.inp) else None
    if source is not None and opts.record is not None:
        for name in ("input", *stems):
            if (Path(opts.record) / f"{name}.wav").resolve() == Path(opts.inp).resolve():
                raise ConfigError(f"{opts.inp}: --record {opts.record} would overwrite this "
                                  "input; choose another folder")

    sd = devices.portaudio()
    out_dev = devices.find(opts.out, "output")
    in_dev = None if source is not None else devices.find(opts.inp, "input")
    if in_dev is not None and in_dev.hostapi != out_dev.hostapi:
        raise DeviceError(f"input {in_dev.label} and output {out_dev.label} are on different "
                          "host APIs; PortAudio needs one host API for both")
    channels = source.shape[1] if source is not None else min(2, in_dev.max_input_channels)
    out_channels = min(2, out_dev.max_output_channels)
    if in_dev is not None:
        devices.check_settings(in_dev, "input", channels, rate)
    devices.check_settings(out_dev, "output", out_channels, rate)

    total = None
    if source is not None:
        total = len(source) + sep.latency_samples  # the file and its separated tail
    if opts.duration is not None:
        frames = max(1, round(opts.duration * rate))
        total = frames if total is None else min(total, frames)

    recorder = (Recorder(Path(opts.record), stems, rate, channels)
                if opts.record is not None else None)
    try:
        with devices.quiet_stderr():
            path = LivePath(sep, remix, channels, block, source, total,
                            recorder.ring if recorder else None)
            path.warm_up()
        code = _run_stream(sd, path, remix, in_dev, out_dev, channels, out_channels,
                           latency_arg, opts, recorder)
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    return code


def _open_stream(sd: Any, path: LivePath, in_dev: Any, out_dev: Any,
                 channels: int, out_channels: int, latency_arg: str | float) -> Any:
    kw = dict(samplerate=path.rate, blocksize=path.block, dtype="float32", latency=latency_arg)
    try:
        with devices.quiet_stderr():
            if in_dev is None:
                return sd.OutputStream(device=out_dev.index, channels=out_channels,
                                       callback=path.out_callback, **kw)
            return sd.Stream(device=(in_dev.index, out_dev.index),
                             channels=(channels, out_channels), callback=path.callback, **kw)
    except (sd.PortAudioError, ValueError) as e:
        which = out_dev.label if in_dev is None else f"{in_dev.label} -> {out_dev.label}"
        raise DeviceError(f"cannot open {which}: {devices.pa_message(e)} (busy, or settings "
                          "it does not support?)") from None


def _abandon(sd: Any, stream: Any, timeout: float = 2.0) -> None:
    """Close a stream whose server went away. PortAudio's JACK host API waits forever for a
    dead server's acknowledgement, so try in a daemon thread; if that hangs, also drop
    sounddevice's exit handler (it would close the stream again and hang the exit)."""

    def close() -> None:
        try:
            stream.abort()
            stream.close()
        except Exception:  # noqa: BLE001 - the stream is gone either way
            pass

    t = threading.Thread(target=close, name="rtsep-abandon", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        import atexit

        handler = getattr(sd, "_exit_handler", None)
        if handler is not None:
            atexit.unregister(handler)


def _run_stream(sd: Any, path: LivePath, remix: Remix, in_dev: Any,
                out_dev: Any, channels: int, out_channels: int, latency_arg: str | float,
                opts: LiveOptions, recorder: Recorder | None) -> int:
    sep, rate = path.sep, path.rate
    stream = _open_stream(sd, path, in_dev, out_dev, channels, out_channels,
                          latency_arg)
    duplex = in_dev is not None
    dev_in, dev_out = _device_latency(stream, duplex)
    dev_samples = round((dev_in + dev_out) * rate)
    alg = sep.latency_samples
    total_ms = 1000.0 * (alg + dev_samples) / rate
    source_txt = opts.inp if in_dev is None else in_dev.label
    print(f"rtsep live: {source_txt} -> {out_dev.label}; model {sep.card.name} "
          f"({', '.join(sep.stems)}), {rate} Hz, {channels} ch, block {path.block}; "
          f"latency {total_ms:.2f} ms", flush=True)
    if opts.verbose:
        terms = " + ".join(f"{k} {v}" for k, v in sep.latency_terms.items())
        print(f"  algorithmic latency: {_ms(alg, rate)} = {terms}")
        print(f"  device latency (PortAudio): input {_ms(round(dev_in * rate), rate)}, "
              f"output {_ms(round(dev_out * rate), rate)}")
        for card in (m.card for m in getattr(sep, "members", [sep])):  # an ensemble's each
            per = path.block / (card.out_frames * card.hop)
            print(f"  model {card.name}: hop {card.hop}, out_frames {card.out_frames}, "
                  f"context {card.context_frames}, lookahead {card.lookahead_frames}; "
                  f"{per:g} invoke(s) per block of {path.block} "
                  f"({1e6 * path.block / rate:.0f} us budget)", flush=True)

    interrupted = lost = False
    stopped_by = ["Ctrl-C"]

    def on_sigterm(signum: int, frame: Any) -> None:
        stopped_by[0] = "SIGTERM"
        raise KeyboardInterrupt

    old_switch = sys.getswitchinterval()
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        with Console() as console:
            if console.keys:
                print(f"keys: 1-{len(remix.stems)} toggle a stem, 0 all stems, b bypass "
                      "(the input, same latency), q quit", flush=True)
            try:
                if recorder is not None:
                    recorder.start()
                gc.collect()
                gc.freeze()  # start-up objects leave the collector's generations: short GCs
                sys.setswitchinterval(0.001)  # the callback thread waits less for the GIL
                with devices.quiet_stderr():
                    stream.start()
                next_status = last_change = time.monotonic()
                last_blocks = -1
                while not path.finished:
                    now = time.monotonic()
                    if int(path.counters[BLOCKS]) != last_blocks:
                        last_blocks, last_change = int(path.counters[BLOCKS]), now
                    if not stream.active or now - last_change > STALL_SECONDS:
                        lost = True  # the server went away, or the device
                        break
                    for key in console.read(0.05):
                        if key in "qQ":
                            path.stop()
                        elif key == "0":
                            remix.restore()
                        elif key in "bB":
                            remix.set_bypass(not remix.bypass)
                        elif key.isdigit() and 1 <= int(key) <= len(remix.stems):
                            remix.toggle(int(key) - 1)
                    if time.monotonic() >= next_status:
                        next_status += STATUS_EVERY
                        console.show(status_line(path, remix, stream.cpu_load, total_ms))
            except KeyboardInterrupt:
                interrupted = True
                path.stop()
            finally:
                if lost:
                    _abandon(sd, stream)
                else:
                    with devices.quiet_stderr():
                        try:
                            stream.stop()
                        finally:
                            stream.close()
    finally:
        sys.setswitchinterval(old_switch)
        gc.unfreeze()
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)
    if path.error is not None:
        raise path.error

    c = path.counters
    seconds = int(c[FRAMES]) / rate
    stopped = f"stopped ({stopped_by[0]}) after " if interrupted else ""
    print(f"rtsep live: {stopped}{int(c[BLOCKS])} "
          f"blocks ({seconds:.2f} s); xruns {path.xruns} (callbacks flagged: input underflow "
          f"{int(c[IN_UNDER])}, "
          f"input overflow {int(c[IN_OVER])}, output underflow {int(c[OUT_UNDER])}, "
          f"output overflow {int(c[OUT_OVER])}); late blocks {int(c[LATE])}; latency "
          f"{_ms(alg, rate)} algorithmic + {_ms(dev_samples, rate)} device = "
          f"{_ms(alg + dev_samples, rate)}", flush=True)
    if opts.verbose:
        t = path.timing_us()
        print(f"  callback time: mean {t['mean']:.0f} us, p99 {t['p99']:.0f} us, max "
              f"{t['max']:.0f} us (block budget {1e6 * path.block / rate:.0f} us)")
    if recorder is not None:
        dropped = int(c[REC_DROPPED])
        outputs = recorder.finish()
        print(f"rtsep live: recorded {recorder.frames} frames of input + {len(sep.stems)} "
              f"stems -> {outputs[0].parent} (the stems lag input.wav by {alg} samples)")
        if dropped:
            print(f"rtsep: warning: the recorder fell behind and lost {dropped} frames; the "
                  "recording has gaps", file=sys.stderr)
    if lost:
        raise DeviceError(f"the audio stream stopped by itself after {seconds:.2f} s (audio "
                          "server or device gone?)")
    return 0
