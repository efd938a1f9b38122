"""``rtsep live`` on a real JACK server (dummy driver), run as a user runs it.

The fixture starts its own ``jackd --no-realtime -d dummy -r 44100 -p 64`` under a private name
(tests/jack.py); ``rtsep live`` runs in a subprocess started after the server is up, because
PortAudio lists host APIs when sounddevice is imported. Timing figures (xruns, late blocks)
are printed and parsed but not asserted: the dummy driver misses deadlines of its own on a
busy machine. What is asserted does not depend on timing: a file as --in is read block by
block from memory, so the recording equals the offline separation exactly.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import allocations_of, music, skip_unless_installed
from jack import JackServer, jackd_path

from rtsep.cli import main
from rtsep.devices import Device, HostApi, resolve
from rtsep.engine import Separator, Stream, load
from rtsep.errors import DeviceError
from rtsep.live import BLOCKS, LivePath, Recorder
from rtsep.remix import Remix

RATE = 44100
SUMMARY = re.compile(r"rtsep live: (?:stopped \(Ctrl-C\) after )?(\d+) blocks \(([\d.]+) s\); "
                     r"xruns (\d+) \(.*\); late blocks (\d+); latency (\d+) samples "
                     r"\([\d.]+ ms\) algorithmic \+ (\d+) samples")


@pytest.fixture(scope="module")
def jack() -> Iterator[JackServer]:
    skip_unless_installed(jackd_path() is not None,
                          "jackd is not installed (apt-get install jackd2 libportaudio2)")
    with JackServer(rate=RATE, period=64) as server:
        yield server


def rtsep(jack: JackServer, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsep", *args], capture_output=True,
                          text=True, timeout=timeout, env=jack.env(), stdin=subprocess.DEVNULL)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {r.stderr!r}"
    return lines[0]


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == RATE
    return data


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live") / "song.wav"
    sf.write(path, music(4.0, 2, RATE, seed=7), RATE, subtype="FLOAT")
    return path


def test_file_in_records_the_offline_separation(jack: JackServer, either_model: Path,
                                                song: Path, tmp_path: Path) -> None:
    # a window model and a stateful one
    check_recording(jack, str(either_model), Separator.load(either_model), song, tmp_path)


def test_wiener_card_records_the_offline_separation(jack: JackServer, tiny_model: Path,
                                                    song: Path, tmp_path: Path) -> None:
    """The Wiener post-filter (an ensemble card's wiener section) runs live in the callback
    and records exactly what it separates offline."""
    card = tmp_path / "filtered.ensemble.json"
    card.write_text(json.dumps({"format": "rtsep-ensemble/1", "name": "filtered",
                                "members": [str(tiny_model)],
                                "wiener": {"n_fft": 256, "memory_seconds": 1.0}}))
    check_recording(jack, str(card), load(card), song, tmp_path, silent_lead=256)


def check_recording(jack: JackServer, model: str, sep: Stream, song: Path, tmp_path: Path,
                    silent_lead: int | None = None) -> None:
    """`rtsep live --in SONG --record` for 3 s: the recorded stems are the offline
    separation, lagging the input by the reported latency (silent before it, or before
    ``silent_lead`` samples for a filter whose first frames spread into the latency)."""
    rec = tmp_path / "rec"
    r = rtsep(jack, "live", "--in", str(song), "--out", "jack", "-m", model,
              "--record", str(rec), "--duration", "3")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    m = SUMMARY.search(r.stdout)
    assert m, r.stdout
    blocks, seconds, xruns, late, latency, device = map(float, m.groups())
    print(f"live run: {xruns:g} xruns, {late:g} late blocks, device latency {device:g}")
    assert seconds == 3.0 and blocks == -(-3 * RATE // 64)  # no live_block in the card: 64
    assert late <= blocks  # counted per block (SUMMARY requires both counts printed)
    x = read(song)
    sep.prepare(RATE, 4096, 2)
    assert latency == sep.latency_samples
    stream = np.concatenate([sep.process(x), sep.flush()], axis=1)
    aligned = stream[:, sep.latency_samples:]  # offline: stem sample n belongs to input n
    n = 3 * RATE
    got_in = read(rec / "input.wav")
    got = np.stack([read(rec / f"{s}.wav") for s in sep.stems])
    assert got_in.shape == (n, 2) and got.shape == (2, n, 2)
    np.testing.assert_array_equal(got_in, x[:n])
    lat = int(latency)  # the recorded stems lag the input by the reported latency
    assert np.abs(got[:, :lat if silent_lead is None else silent_lead]).max() == 0.0
    err = np.abs(got[:, lat:] - aligned[:, : n - lat])
    assert err.max() <= 1e-4, f"first mismatch at {np.argwhere(err > 1e-4)[0]}"
    assert np.abs(got).max() > 1e-2  # the model did something
    assert not list(rec.glob("*.part"))


def test_mic_to_speakers_resolves_to_jack(jack: JackServer, tiny_model: Path) -> None:
    r = rtsep(jack, "devices")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^>< \d+ system \(JACK Audio Connection Kit\): 2 in, 2 out, 44100 Hz",
                     r.stdout, re.M), r.stdout
    r = rtsep(jack, "live", "--in", "mic", "--out", "speakers", "-m", str(tiny_model),
              "--duration", "0.5", "--mute", "a", "--gain", "b=-6", "--verbose")
    assert r.returncode == 0, r.stderr
    assert "(JACK Audio Connection Kit) -> " in r.stdout
    assert "algorithmic latency: 159 samples (3.61 ms) = frame 63 + lookahead 64 + " \
           "out_frames 32" in r.stdout
    assert re.search(r"device latency \(PortAudio\): input \d+ samples .* output \d+ samples",
                     r.stdout)
    assert SUMMARY.search(r.stdout), r.stdout


def test_ctrl_c_stops_cleanly_and_keeps_the_recording(jack: JackServer, tiny_model: Path,
                                                      song: Path, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    p = subprocess.Popen([sys.executable, "-m", "rtsep", "live", "--in", str(song), "--out",
                          "jack", "-m", str(tiny_model), "--record", str(rec)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=jack.env(), stdin=subprocess.DEVNULL)
    try:
        first = p.stdout.readline()  # printed just before the stream starts
        assert first.startswith("rtsep live: "), first + p.stderr.read()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    m = SUMMARY.search(out)
    assert m and "stopped (Ctrl-C)" in out, out
    frames = len(read(rec / "input.wav"))
    assert 0 < frames < 4 * RATE and frames == 64 * int(m.group(1))  # every block recorded


def test_device_errors_are_one_line(jack: JackServer, tiny_model: Path, song: Path) -> None:
    line = one_line_error(rtsep(jack, "live", "--in", str(song), "--out", "no such speaker",
                                "-m", str(tiny_model)))
    assert line == ("rtsep: error: no output device matching 'no such speaker' (output "
                    "devices: 0 'system' (JACK Audio Connection Kit); see rtsep devices)")
    line = one_line_error(rtsep(jack, "live", "--in", "99", "-m", str(tiny_model)))
    assert line == "rtsep: error: no device number 99 (devices: 0..0; see rtsep devices)"


def test_input_errors_before_any_device(tiny_model: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """Checked before PortAudio is touched (in-process: no server needed)."""
    imported_before = "sounddevice" in sys.modules
    (tmp_path / "rec").mkdir()
    mine = tmp_path / "rec" / "input.wav"
    sf.write(mine, music(0.1, 1, RATE), RATE)
    cases = [
        (["--in", str(mine), "--record", str(tmp_path / "rec")],
         f"{mine}: --record {tmp_path / 'rec'} would overwrite this input; choose another "
         "folder"),
        (["--in", str(tmp_path / "nope.wav")], f"{tmp_path / 'nope.wav'}: file not found"),
        (["--in", "x.wav", "--solo", "vocals"], "unknown stem 'vocals': this model has a, b"),
        (["--in", "x.wav", "--gain", "a"], "--gain expects STEM=DB (for example bass=-6), "
                                           "got 'a'"),
        (["--in", "x.wav", "--latency", "soon"], "--latency must be low, high or seconds > 0, "
                                                 "got 'soon'"),
        (["--in", "x.wav", "--duration", "0"], "--duration must be > 0 seconds, got 0.0"),
    ]
    for args, message in cases:
        assert main(["live", "-m", str(tiny_model), *args]) == 1
        assert capsys.readouterr().err == f"rtsep: error: {message}\n"
    # None of this needed PortAudio (and `rtsep file` users never import it).
    assert imported_before or "sounddevice" not in sys.modules


def test_device_names_resolve() -> None:
    """Name matching on a literal device table (what PortAudio would list)."""
    apis = [HostApi(0, "ALSA", (), -1, -1),
            HostApi(1, "JACK Audio Connection Kit", (0, 1, 2), 0, 0)]

    def dev(i: int, name: str, ins: int, outs: int) -> Device:
        return Device(i, name, apis[1].name, ins, outs, 44100.0, (0.003, 0.003), (0.02, 0.02))

    devices = [dev(0, "system", 2, 2), dev(1, "headphones", 0, 2), dev(2, "headphones x", 0, 2)]
    # PortAudio's default host API (ALSA) has nothing: the JACK defaults are used.
    assert resolve("mic", "input", devices, apis).index == 0
    assert resolve("speakers", "output", devices, apis).index == 0
    assert resolve("1", "output", devices, apis).index == 1
    assert resolve("SYS", "input", devices, apis).index == 0
    assert resolve("headphones", "output", devices, apis).index == 1  # exact name wins
    with pytest.raises(DeviceError, match=r"^device 1 'headphones' \(JACK Audio Connection "
                                          r"Kit\) has no input channels$"):
        resolve("1", "input", devices, apis)
    with pytest.raises(DeviceError, match="has no input channels"):
        resolve("headphones x", "input", devices, apis)
    with pytest.raises(DeviceError, match="'phone' matches several output devices: 1 "):
        resolve("phone", "output", devices, apis)
    with pytest.raises(DeviceError, match="'speakers' is the default output; for input use "
                                          "'mic'"):
        resolve("speakers", "input", devices, apis)
    with pytest.raises(DeviceError, match="^no input device found"):
        resolve("mic", "input", [], apis)


def test_callback_allocates_nothing(tiny_model: Path, tmp_path: Path) -> None:
    """The whole callback (file read, separation, delay, remix, record ring, counters)."""
    sep = Separator.load(tiny_model)
    x = music(1.0, 2, RATE)
    rec = Recorder(tmp_path / "rec", sep.stems, RATE, 2)
    path = LivePath(sep, Remix(sep.stems, RATE, mute=["a"]), 2, 64, source=x,
                    record=rec.ring)
    path.warm_up()
    out = np.zeros((64, 2), np.float32)
    for _ in range(5):
        path.out_callback(out, 64, None, 0)

    def run() -> None:
        for _ in range(300):
            path.out_callback(out, 64, None, 0)

    retained, peak, where = allocations_of(run)
    rec.abort()
    assert path.error is None and path.counters[BLOCKS] == 305
    assert retained <= 256, f"retained {retained} bytes, at {where}"
    assert peak < 4096, f"transient peak {peak} bytes"
