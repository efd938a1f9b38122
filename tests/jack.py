"""A private JACK dummy server for tests: real audio callbacks without a sound card.

Each server gets its own name (``jackd -n``) and clients find it through
``JACK_DEFAULT_SERVER``, so tests never meet a server someone else started on the machine
(another test run, a benchmark) and two runs can go on at once. Start the server *before*
importing sounddevice in the process that uses it (PortAudio lists host APIs at import):
tests run ``rtsep live`` in a subprocess with :meth:`JackServer.env`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def jackd_path() -> str | None:
    """The jackd binary, or None when JACK is not installed."""
    return shutil.which("jackd")


class JackServer:
    """``jackd --no-realtime -d dummy -r RATE -p PERIOD`` under a unique name."""

    def __init__(self, rate: int = 44100, period: int = 64, name: str | None = None) -> None:
        self.rate, self.period = rate, period
        self.name = name or f"rtsep-test-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
        self.proc: subprocess.Popen | None = None
        self._log = Path(tempfile.mkstemp(prefix="jackd-", suffix=".log")[1])

    def env(self) -> dict[str, str]:
        """Environment for a client process: this server, and never auto-start another."""
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self, timeout: float = 15.0) -> JackServer:
        jackd = jackd_path()
        if jackd is None:
            raise RuntimeError("jackd not found (apt-get install jackd2)")
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(
                [jackd, "-n", self.name, "--no-realtime", "-d", "dummy", "-r", str(self.rate),
                 "-p", str(self.period)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited with {self.proc.returncode}: {self.log()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"jackd did not come up within {timeout:g} s: {self.log()}")

    def _ready(self) -> bool:
        wait = shutil.which("jack_wait")
        if wait:  # jackd2 ships it: asks the server itself
            r = subprocess.run([wait, "-s", self.name, "-c"], capture_output=True, text=True,
                               env=self.env(), timeout=10)
            return r.stdout.strip() == "running"
        return bool(glob.glob(f"/dev/shm/jack_{self.name}_*"))

    def log(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the server we started (and only it) and remove its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
