"""The live round trip of ``rtsep bench --live``: clicks sent through ``rtsep live`` on a JACK
server and found again by cross-correlation, compared with the latency arithmetic.

Why measure: the latency rtsep prints is arithmetic (DESIGN.md section 4, plus what PortAudio
reports for the device); only a signal that really went through the live path shows that the
arithmetic is the delay a listener gets.

How: ``rtsep live --in system --out system`` runs as a user runs it, in a subprocess, through
the model: the remix of all stems at 0 dB, not bypass (bypass is a plain delay line and would
not test the engine's claim). ``system`` is JACK's hardware client; ``jack`` would also match the
measurer, which PortAudio lists as a device. A measuring JACK client (JACK-Client, in a
subprocess of its own so that libjack never hangs the benchmark and no ``jack`` module of a test
folder shadows it) takes rtsep's ports off the system ports (no clicks on a user's speakers, no
microphone in the recording), connects its output to rtsep's inputs and rtsep's first output to
its input, plays single-sample clicks at pseudo-random intervals and records what comes back,
both on JACK's frame clock (a cycle the measurer misses leaves a gap, not a shift). The delay is
the lag of the peak of the normalised cross-correlation; for a model whose stems sum to the
input that is the input delayed at 0 dB, for any other model the remix still carries the clicks.

The expected figure, in samples (exact)::

    expected = latency_samples + block + period

- ``latency_samples``: the engine's algorithmic latency (``Separator.latency_samples``);
- ``block``: PortAudio's JACK host API runs its buffer processor for an unknown host buffer
  size, so it adapts JACK's periods to the user's block through a FIFO primed with one block of
  output: one block of delay, even when the block equals the period;
- ``period``: the measurer and rtsep form a cycle in JACK's graph. JACK runs the two clients one
  after the other within a period, so the connection that closes the cycle hands over the
  previous period's buffer: one period (on a sound card the converters' latencies take this
  term's place, as JACK's port latencies report them).
On the JACK dummy server at ``-p 64`` with ``--block 64``: ``latency_samples + 128``. There
PortAudio 19.6 reports a device latency of ``block + period`` too (system capture port
``period`` minus one period, playback ``2 * period`` minus one period, plus the FIFO), which
``rtsep live`` prints and is returned here as ``device_latency_samples``.

``rtsep live`` runs TFLite with one thread: the ``threads`` of the benchmark do not apply to it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

NO_SERVER = "no JACK server reachable"
CLICKS = 8
CLICK_AMPLITUDE = 0.5
#: Below this peak of the normalised cross-correlation the clicks were not found.
MIN_CORRELATION = 0.2
SUMMARY = re.compile(r"rtsep live: .*?(\d+) blocks \(([\d.]+) s\); xruns (\d+) .*?; late blocks "
                     r"(\d+); latency (\d+) samples \([\d.]+ ms\) algorithmic \+ (-?\d+) samples")
ROOT = Path(__file__).resolve().parent.parent  # where `rtsep` is imported from


# -- signal and analysis (pure numpy) --------------------------------------------------------

def click_train(max_lag: int, clicks: int = CLICKS, lead: int = 256,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(signal float32[n], click positions): clicks spaced more than ``max_lag`` apart at
    pseudo-random intervals, so the correlation has one peak within 0..max_lag and each click's
    echo has a window of its own; the signal ends ``max_lag`` after the last click."""
    rng = np.random.default_rng(seed)
    gaps = max_lag + 1 + rng.integers(0, max_lag // 2 + 64, clicks - 1)
    pos = lead + np.concatenate([[0], np.cumsum(gaps)])
    sig = np.zeros(int(pos[-1]) + max_lag + 1, np.float32)
    sig[pos] = CLICK_AMPLITUDE
    return sig, pos


def find_delay(sent: np.ndarray, received: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, peak) of the normalised cross-correlation of ``received`` against ``sent`` over
    lags 0..max_lag: ``received[t + lag] ~ sent[t]``. The peak is |r| / (|sent| |received|),
    1.0 for an exact delayed copy (either polarity); 0.0 for silence."""
    n = len(sent)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.conj(np.fft.rfft(sent, size)) * np.fft.rfft(received[:n], size),
                        size)[: max_lag + 1]
    norm = float(np.linalg.norm(sent) * np.linalg.norm(received[:n]))
    if norm == 0.0:
        return 0, 0.0
    lag = int(np.argmax(np.abs(corr)))
    return lag, float(abs(corr[lag]) / norm)


def click_lags(received: np.ndarray, positions: np.ndarray, max_lag: int) -> list[int | None]:
    """Each click's own lag (its echo's largest sample; None when that is under a quarter of
    the loudest echo: lost in a cycle the measurer missed): a consistency check on the global
    peak. An xrun inside rtsep delays the clicks in flight by a period and never advances
    them, so the fastest click is the path's delay without xruns."""
    windows = [np.abs(received[p:p + max_lag + 1]) for p in positions]
    peaks = [float(w.max()) if len(w) else 0.0 for w in windows]
    top = max(peaks, default=0.0)
    return [int(np.argmax(w)) if top > 0 and peak >= 0.25 * top else None
            for w, peak in zip(windows, peaks)]


def expected_roundtrip(latency_samples: int, block: int, period: int) -> dict[str, int]:
    """The arithmetic of the measured path, term by term (see the module docstring)."""
    return {"algorithmic": latency_samples, "portaudio_block": block, "jack_cycle": period}


def parse_summary(text: str) -> dict[str, int] | None:
    """xruns, late blocks, algorithmic and device latency from ``rtsep live``'s summary."""
    m = SUMMARY.search(text)
    if m is None:
        return None
    blocks, _, xruns, late, alg, device = m.groups()
    return {"blocks": int(blocks), "xruns": int(xruns), "late_blocks": int(late),
            "latency_samples": int(alg), "device_latency_samples": int(device)}


# -- the benchmark's side --------------------------------------------------------------------

def _unmeasured(note: str, **extra: Any) -> dict[str, Any]:
    return {"measured_roundtrip_ms": None, "expected_roundtrip_ms": None,
            "roundtrip_error_ms": None, "xruns": None, "roundtrip_note": note, **extra}


def server_reachable(env: dict[str, str], timeout: float = 5.0) -> bool | None:
    """Whether the JACK server the environment names runs (jack_wait, never starting one);
    None when jack_wait is not installed (the measurer finds out instead)."""
    wait = shutil.which("jack_wait")
    if wait is None:
        return None
    try:
        r = subprocess.run([wait, "-c"], capture_output=True, text=True, env=env,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False
    return r.stdout.strip() == "running"


class _Lines:
    """A subprocess's stdout lines through a queue, so every read has a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self._t = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._t.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.q.put(line)
        self.q.put("")

    def get(self, timeout: float) -> str | None:
        """The next line; "" at the end of the output, None on timeout."""
        try:
            return self.q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM,
          timeout: float = 10.0) -> tuple[str, str]:
    """Stop a process we started (signal, then kill) and return what it printed on the pipes
    nobody else reads."""
    if proc is None:
        return "", ""
    if proc.poll() is None:
        proc.send_signal(sig)
    if proc.stdout is None or proc.stderr is None:  # the measurer: stdout pumped, stderr a file
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        return "", ""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=timeout)
    return out or "", err or ""


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def roundtrip(model: str | None, block: int, threads: int = 1, *, clicks: int = CLICKS,
              timeout: float = 60.0) -> dict[str, Any]:
    """Measure the live round trip on the JACK server of this environment (see the module
    docstring for the path and the formula); returns the ``rtsep bench`` keys."""
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    if server_reachable(env) is False:
        return _unmeasured(NO_SERVER)
    from .engine import load

    sep = load(model, threads=threads, live=True)
    alg, rate = sep.latency_samples, sep.sample_rate
    max_lag = 2 * (alg + block) + 4096  # covers periods up to 2048 with room to spare
    deadline = time.monotonic() + timeout
    spec = {"max_lag": max_lag, "clicks": clicks, "wait_s": max(5.0, timeout - 10.0)}
    measurer = live = None
    m_log = tempfile.TemporaryFile("w+", errors="replace")

    def m_err() -> str:
        m_log.seek(0)
        return m_log.read()

    try:
        measurer = subprocess.Popen(
            [sys.executable, "-m", "rtsep.bench_live", "measure", json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=m_log, stdin=subprocess.DEVNULL,
            text=True, env=env, cwd=ROOT)
        lines = _Lines(measurer)
        first = lines.get(min(20.0, deadline - time.monotonic()))
        if first is None or not first.startswith("ready "):
            msg = json.loads(first).get("error") if first and first.startswith("{") else None
            _stop(measurer)
            return _unmeasured(msg or f"measuring client did not start: {_last_line(m_err())}")
        info = json.loads(first[len("ready "):])
        if info["rate"] != rate:
            _stop(measurer)
            return _unmeasured(f"the JACK server runs at {info['rate']} Hz, the model at "
                               f"{rate} Hz")
        cmd = [sys.executable, "-m", "rtsep", "live", "--in", "system", "--out", "system",
               "--block", str(block), "--duration", f"{timeout + 30:g}"]
        if model is not None:
            cmd += ["-m", str(model)]
        live = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
        result = None
        while result is None and time.monotonic() < deadline:
            line = lines.get(0.2)
            if line == "":
                break  # the measurer ended without a result
            if line is None:
                if live.poll() is not None:
                    break  # rtsep live failed (its error is on its stderr)
            elif line.startswith("{"):
                result = json.loads(line)
        _stop(measurer)
        measurer = None
        out, err = _stop(live)
        live = None
        why = (result or {}).get("error") or _last_line(err) or _last_line(m_err()) or "timeout"
    finally:
        _stop(measurer, signal.SIGKILL)
        _stop(live, signal.SIGKILL)
        m_log.close()
    summary = parse_summary(out)
    if result is None or "error" in result:
        return _unmeasured(f"round trip not measured: {why}",
                           xruns=summary["xruns"] if summary else None)
    period = int(result["period"])
    terms = expected_roundtrip(alg, block, period)
    expected = sum(terms.values())
    lag, peak = int(result["lag"]), float(result["correlation"])

    def ms(samples: float) -> float:
        return round(1000.0 * samples / rate, 3)

    found = peak >= MIN_CORRELATION
    notes = [] if found else [f"clicks not found (correlation peak {peak:.2f})"]
    lags = result["click_lags"]
    heard = [x for x in lags if x is not None]
    late = sum(x > min(heard) for x in heard) if heard else 0
    if late:
        notes.append(f"{late} of {len(heard)} clicks came back later than the fastest (xruns "
                     "delay the clicks in flight)")
    if threads != 1:
        notes.append("rtsep live runs TFLite with 1 thread")
    if result["missed_samples"]:
        notes.append(f"the measuring client missed {result['missed_samples']} samples (late "
                     "JACK cycles)")
    r: dict[str, Any] = {
        "measured_roundtrip_ms": ms(lag) if found else None,
        "expected_roundtrip_ms": ms(expected),
        "roundtrip_error_ms": ms(lag - expected) if found else None,
        "roundtrip_samples": lag if found else None,
        "expected_roundtrip_samples": expected,
        "roundtrip_error_samples": lag - expected if found else None,
        "roundtrip_terms_samples": terms,
        "roundtrip_correlation": round(peak, 4),
        "roundtrip_click_lags": lags,
        "roundtrip_fastest_click_samples": min(heard) if heard else None,
        "jack_period": period,
        "jack_xruns": result["jack_xruns"],
        "device_latency_samples": summary["device_latency_samples"] if summary else None,
        "xruns": summary["xruns"] if summary else None,
        "live_late_blocks": summary["late_blocks"] if summary else None,
    }
    if notes:
        r["roundtrip_note"] = "; ".join(notes)
    return r


# -- the measuring client (``python -m rtsep.bench_live measure SPEC``) ----------------------

def _emit(obj: dict[str, Any], prefix: str = "") -> None:
    print(prefix + json.dumps(obj), flush=True)


def _find_live_client(client: Any, before: set[str], own: str) -> tuple[list, list] | None:
    """rtsep live's (input ports, output ports): the first audio client that appeared after
    ``before`` with both, once PortAudio has connected them (the stream has started)."""
    by_client: dict[str, tuple[list, list]] = {}
    for p in client.get_ports(is_audio=True):
        name = p.name.split(":", 1)[0]
        if name in before or name == own:
            continue
        ins, outs = by_client.setdefault(name, ([], []))
        (ins if p.is_input else outs).append(p)
    for ins, outs in by_client.values():
        if ins and outs and client.get_all_connections(ins[0]):
            return sorted(ins, key=lambda p: p.name), sorted(outs, key=lambda p: p.name)
    return None


def _since(now: int, start: int) -> int:
    """Frames from ``start`` to ``now`` on JACK's 32-bit frame clock (signed, wraps)."""
    return (now - start + (1 << 31)) % (1 << 32) - (1 << 31)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measuring JACK client (prints a ``ready`` line once it has looked at the graph);
    returns the lag, the correlation and JACK's facts."""
    try:
        import jack
    except ImportError:
        return {"error": "the JACK-Client package is not installed (pip install JACK-Client)"}
    except OSError as e:  # JACK-Client without libjack
        return {"error": f"JACK library not found ({e}); apt-get install libjack-jackd2-0"}
    if not hasattr(jack, "Client"):
        return {"error": f"'jack' is not JACK-Client ({getattr(jack, '__file__', '?')})"}
    try:
        client = jack.Client("rtsep-bench", no_start_server=True)
    except jack.JackError:
        return {"error": NO_SERVER}
    max_lag, wait_s = int(spec["max_lag"]), float(spec["wait_s"])
    sig, positions = click_train(max_lag, int(spec["clicks"]))
    rec = np.zeros_like(sig)
    n = len(sig)
    got = np.zeros(n, bool)  # samples the callback recorded (a missed cycle leaves a gap)
    state: dict[str, Any] = {"start": None, "xruns": 0}
    out_port = client.outports.register("click")
    in_port = client.inports.register("return")

    @client.set_process_callback
    def process(frames: int) -> None:
        out = out_port.get_array()
        start = state["start"]
        if start is None:
            out.fill(0.0)
            return
        a = _since(client.last_frame_time, start)
        lo, hi = max(0, -a), min(frames, n - a)
        out.fill(0.0)
        if lo < hi:
            rec[a + lo:a + hi] = in_port.get_array()[lo:hi]
            out[lo:hi] = sig[a + lo:a + hi]
            got[a + lo:a + hi] = True

    @client.set_xrun_callback
    def xrun(delay: float) -> None:
        if state["start"] is not None:
            state["xruns"] += 1

    period, rate = client.blocksize, client.samplerate
    with client:
        before = {p.name.split(":", 1)[0] for p in client.get_ports()}
        _emit({"period": period, "rate": rate, "client": client.name}, "ready ")
        deadline = time.monotonic() + wait_s
        ports = None
        while ports is None and time.monotonic() < deadline:
            time.sleep(0.02)
            ports = _find_live_client(client, before, client.name)
        if ports is None:
            return {"error": f"rtsep live's ports did not appear within {wait_s:g} s"}
        ins, outs = ports
        for p in (*ins, *outs):  # off the system ports: no clicks on speakers, no microphone
            for q in client.get_all_connections(p):
                if p.is_input:
                    client.disconnect(q, p)
                else:
                    client.disconnect(p, q)
        for p in ins:
            client.connect(out_port, p)
        client.connect(outs[0], in_port)
        time.sleep(0.1)  # let the connections settle before the first click
        start = client.frame_time + 4 * period
        state["start"] = start
        end_wait = time.monotonic() + n / rate + 2.0
        while time.monotonic() < end_wait:
            time.sleep(0.02)
            if _since(client.frame_time, start) > n + 2 * period:
                break
        state["start"] = None
    lag, peak = find_delay(sig, rec, max_lag)
    return {"lag": lag, "correlation": peak, "click_lags": click_lags(rec, positions, max_lag),
            "period": period, "rate": rate, "jack_xruns": state["xruns"],
            "missed_samples": int(n - got.sum())}


def main(argv: list[str] | None = None) -> int:
    """``python -m rtsep.bench_live measure SPEC_JSON``: one JSON line on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "measure":
        print("usage: python -m rtsep.bench_live measure SPEC_JSON", file=sys.stderr)
        return 2
    try:
        _emit(measure(json.loads(argv[1])))
    except Exception as e:  # noqa: BLE001 - the parent reads one JSON line, whatever happens
        _emit({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
