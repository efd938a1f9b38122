"""Audio devices through PortAudio (sounddevice): listing, and resolving what the user typed.

A device is named the way sounddevice's examples do it: ``mic`` / ``speakers`` (the default
input / output), a number from ``rtsep devices``, or a case-insensitive substring of
``"<name>, <host API>"`` (so ``jack`` picks the JACK device). The defaults fall back to the
first host API that has a device of that kind when PortAudio's default host API has none: on
machines without sound cards ALSA lists nothing and JACK is the only host API with devices.

sounddevice is imported lazily (``rtsep file`` works without PortAudio) and with file
descriptor 2 muted: PortAudio enumerates host APIs at import, and ALSA and libjack print their
probing noise straight to stderr, which would bury our one-line errors. Every failure here is a
one-line :class:`DeviceError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .errors import DeviceError
from .stdio import quiet_stderr

DEFAULT_NAMES = {"input": ("mic", "default"), "output": ("speakers", "default")}
#: Host APIs preferred for the defaults when PortAudio's default host API has no device.
PREFERRED_HOSTAPIS = ("JACK Audio Connection Kit", "PulseAudio", "ALSA")

_sd: ModuleType | None = None


def portaudio() -> ModuleType:
    """Import sounddevice once, quietly; a missing PortAudio library is a DeviceError."""
    global _sd
    if _sd is None:
        try:
            with quiet_stderr():
                import sounddevice
        except OSError as e:
            raise DeviceError(f"PortAudio library not found ({e}); install it (Debian: "
                              "apt-get install libportaudio2)") from None
        _sd = sounddevice
    return _sd


def pa_message(e: BaseException) -> str:
    """A PortAudio error as one short line."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text


@dataclass(frozen=True)
class Device:
    """One PortAudio device, as far as rtsep cares."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_low_latency: tuple[float, float]  # input, output (seconds)
    default_high_latency: tuple[float, float]

    @property
    def label(self) -> str:
        return f"{self.index} '{self.name}' ({self.hostapi})"

    def channels(self, kind: str) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


@dataclass(frozen=True)
class HostApi:
    index: int
    name: str
    devices: tuple[int, ...]
    default_input: int  # -1: none
    default_output: int


def _devices_from(raw_devices: Sequence[dict[str, Any]],
                  raw_apis: Sequence[dict[str, Any]]) -> list[Device]:
    return [Device(index=i, name=d["name"], hostapi=raw_apis[d["hostapi"]]["name"],
                   max_input_channels=d["max_input_channels"],
                   max_output_channels=d["max_output_channels"],
                   default_samplerate=d["default_samplerate"],
                   default_low_latency=(d["default_low_input_latency"],
                                        d["default_low_output_latency"]),
                   default_high_latency=(d["default_high_input_latency"],
                                         d["default_high_output_latency"]))
            for i, d in enumerate(raw_devices)]


def query() -> tuple[list[Device], list[HostApi], tuple[int, int]]:
    """All devices, all host APIs, and PortAudio's default (input, output) indices (-1: none)."""
    sd = portaudio()
    with quiet_stderr():
        raw_devices = list(sd.query_devices())
        raw_apis = list(sd.query_hostapis())
        defaults = []
        for kind in ("input", "output"):
            try:
                defaults.append(int(sd.query_devices(kind=kind)["index"]))
            except (sd.PortAudioError, ValueError, KeyError):
                defaults.append(-1)
    apis = [HostApi(i, a["name"], tuple(a["devices"]), a["default_input_device"],
                    a["default_output_device"]) for i, a in enumerate(raw_apis)]
    return _devices_from(raw_devices, raw_apis), apis, (defaults[0], defaults[1])


def default_device(kind: str, devices: Sequence[Device], apis: Sequence[HostApi],
                   pa_default: int) -> Device:
    """PortAudio's default of this kind, else the preferred host API's default, else any."""
    if 0 <= pa_default < len(devices) and devices[pa_default].channels(kind) > 0:
        return devices[pa_default]
    ranked = sorted(apis, key=lambda a: (PREFERRED_HOSTAPIS.index(a.name)
                                         if a.name in PREFERRED_HOSTAPIS else len(apis)))
    for api in ranked:
        idx = api.default_input if kind == "input" else api.default_output
        if 0 <= idx < len(devices) and devices[idx].channels(kind) > 0:
            return devices[idx]
    for d in devices:
        if d.channels(kind) > 0:
            return d
    summary = ", ".join(f"{a.name} {len(a.devices)}" for a in apis) or "none"
    raise DeviceError(f"no {kind} device found (devices per host API: {summary}); is the "
                      "audio server running (for example jackd)?")


def resolve(spec: str, kind: str, devices: Sequence[Device], apis: Sequence[HostApi],
            pa_default: int = -1) -> Device:
    """The device the user meant by ``spec`` (``mic``/``speakers``, a number or a name
    substring), which must have channels of ``kind`` ('input' or 'output')."""
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    spec = spec.strip()
    if spec.lower() in DEFAULT_NAMES[kind]:
        return default_device(kind, devices, apis, pa_default)
    if spec.lower() in DEFAULT_NAMES["input" if kind == "output" else "output"]:
        raise DeviceError(f"'{spec}' is the default {'input' if kind == 'output' else 'output'}"
                          f"; for {kind} use '{DEFAULT_NAMES[kind][0]}', a number or a name")
    if spec.lstrip("-").isdigit():
        idx = int(spec)
        if not 0 <= idx < len(devices):
            rng = f"0..{len(devices) - 1}" if devices else "none"
            raise DeviceError(f"no device number {idx} (devices: {rng}; see rtsep devices)")
        return _with_channels(devices[idx], kind)
    needle = spec.lower()
    found = [d for d in devices if needle in f"{d.name}, {d.hostapi}".lower()]
    usable = [d for d in found if d.channels(kind) > 0]
    if len(usable) > 1:
        exact = [d for d in usable if d.name.lower() == needle]
        if len(exact) == 1:
            return exact[0]
        names = "; ".join(d.label for d in usable)
        raise DeviceError(f"'{spec}' matches several {kind} devices: {names}; use the number")
    if usable:
        return usable[0]
    if found:
        return _with_channels(found[0], kind)
    have = "; ".join(d.label for d in devices if d.channels(kind) > 0) or "none"
    raise DeviceError(f"no {kind} device matching '{spec}' ({kind} devices: {have}; "
                      "see rtsep devices)")


def _with_channels(d: Device, kind: str) -> Device:
    if d.channels(kind) <= 0:
        raise DeviceError(f"device {d.label} has no {kind} channels")
    return d


def find(spec: str, kind: str) -> Device:
    """Resolve ``spec`` against the devices PortAudio lists now."""
    devices, apis, defaults = query()
    return resolve(spec, kind, devices, apis, defaults[0 if kind == "input" else 1])


def check_settings(device: Device, kind: str, channels: int, sample_rate: int) -> None:
    """Refuse, in one line, a device that cannot run ``channels`` float32 at ``sample_rate``.

    A rate mismatch is refused rather than resampled in the callback: a streaming resampler
    allocates its output and varies the block length, neither of which the callback may do."""
    sd = portaudio()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        with quiet_stderr():
            check(device=device.index, channels=channels, dtype="float32",
                  samplerate=sample_rate)
    except (sd.PortAudioError, ValueError) as e:
        msg = pa_message(e)
        if "sample rate" in msg.lower():
            raise DeviceError(
                f"{kind} device {device.label} cannot run at {sample_rate} Hz, the model's "
                f"rate (the device runs at {device.default_samplerate:g} Hz); set the device "
                f"or server to {sample_rate} Hz (JACK: jackd -d <driver> -r {sample_rate})"
            ) from None
        raise DeviceError(f"{kind} device {device.label} cannot run {channels} channel(s) at "
                          f"{sample_rate} Hz: {msg}") from None


def describe() -> str:
    """The text of ``rtsep devices``: host APIs, then devices with the defaults marked."""
    devices, apis, defaults = query()
    lines = ["host APIs:"]
    for a in apis:
        lines.append(f"  {a.index} {a.name}: {len(a.devices)} device(s)")
    lines.append("devices (> mic, < speakers):")
    try:
        mic = default_device("input", devices, apis, defaults[0]).index
    except DeviceError:
        mic = -1
    try:
        spk = default_device("output", devices, apis, defaults[1]).index
    except DeviceError:
        spk = -1
    for d in devices:
        mark = (">" if d.index == mic else " ") + ("<" if d.index == spk else " ")
        lines.append(f"{mark} {d.index} {d.name} ({d.hostapi}): {d.max_input_channels} in, "
                     f"{d.max_output_channels} out, {d.default_samplerate:g} Hz, low latency "
                     f"{1000 * d.default_low_latency[1]:.1f} ms out")
    if not devices:
        lines.append("  none (is the audio server running? for example: jackd -d dummy "
                     "-r 44100)")
    return "\n".join(lines)
