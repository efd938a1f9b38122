"""Ensembles: several models of the same stems run as one separator, their stems averaged.

Why: models that see the music differently make different mistakes (a 2048-point STFT
mask and a 64-sample filterbank U-Net), so the weighted average of their stems beats either
(as Demucs's bags of models). Each member's stems are delayed to the slowest member's latency
before they are averaged, so output sample n is still input sample n - latency_samples. An
average of partitions of the input is a partition: if every member's stems add up to the
input, so do the ensemble's.

An ensemble is a card ``<name>.ensemble.json`` (no .tflite of its own)::

    {"format": "rtsep-ensemble/1", "name": "mix-openmsx", "kind": "ensemble",
     "members": ["spec-openmsx", "fbwg-openmsx"], "weights": [0.5, 0.5],
     "shifts": [0, 0], "member_sha256": ["...", "..."], "description": "...",
     "live_block": 4096, "validation": {...}}

Members are model files beside the card (``<member>.tflite``), else shipped names or paths.
``member_sha256`` (optional) pins the members the card's numbers were measured with: a member
changed since is a load error, not a silently different ensemble.

``shifts`` (optional, samples, default 0): a member hears the input that many samples late
(Demucs's shift trick: the same model on a shifted input frames the music differently, e.g.
another phase of a 512-sample STFT hop, and errs differently); it counts in that member's
latency, so the alignment above still holds. The same model may be a member several times.

``wiener`` (optional, ``{"n_fft": 4096, "memory_seconds": 10}``): the averaged stems go through
the streaming multichannel Wiener filter (``rtsep/wiener.py``), which adds n_fft samples of
latency; with it one member is enough (a single model behind the filter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels
from .engine import Separator, Stream
from .errors import ModelError
from .modelcard import model_name, resolve, sha256_of
from .ring import next_pow2
from .wiener import DEFAULTS as wiener_defaults
from .wiener import WienerFilter, settings_error

ENSEMBLE_FORMAT = "rtsep-ensemble/1"


@dataclass(frozen=True)
class EnsembleCard:
    """The parsed, validated card of an ensemble (the fields a model card offers callers)."""

    path: Path
    name: str
    members: tuple[Path, ...]
    weights: tuple[float, ...]
    sha256: str
    raw: dict[str, Any] = field(repr=False, compare=False)
    shifts: tuple[int, ...] = ()
    live_block: int | None = None
    variant: str = "ensemble"
    kind: str = "ensemble"
    wiener: dict[str, Any] | None = None


def read_ensemble_card(path: str | Path) -> EnsembleCard:
    """Parse and check an ensemble card; its members are only located here (``Ensemble``
    loads and checks them)."""
    path = Path(path)
    label = path.name
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"ensemble card not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{label}: not a readable JSON ensemble card ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != ENSEMBLE_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ModelError(f"{label}: not an ensemble card (format {found!r}, expected "
                         f"{ENSEMBLE_FORMAT!r})")
    wiener = _wiener_settings(label, raw.get("wiener"))
    members = raw.get("members")
    fewest = 1 if wiener else 2
    if not isinstance(members, list) or len(members) < fewest or not all(
            isinstance(m, str) and m for m in members):
        raise ModelError(f"{label}: members should be a list of at least "
                         f"{'one model name' if wiener else 'two model names'}, "
                         f"found {members!r}")
    weights = raw.get("weights", [1.0] * len(members))
    if (not isinstance(weights, list) or len(weights) != len(members) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
            for w in weights)):
        raise ModelError(f"{label}: weights should be {len(members)} positive numbers, found "
                         f"{weights!r}")
    shifts = raw.get("shifts", [0] * len(members))
    if (not isinstance(shifts, list) or len(shifts) != len(members) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shifts)):
        raise ModelError(f"{label}: shifts should be {len(members)} whole numbers of samples "
                         f">= 0, found {shifts!r}")
    live_block = raw.get("live_block")
    if live_block is not None and (not isinstance(live_block, int) or isinstance(
            live_block, bool) or live_block < 1):
        raise ModelError(f"{label}: live_block should be a positive integer, found "
                         f"{live_block!r}")
    total = float(sum(weights))
    return EnsembleCard(path=path, name=str(raw.get("name") or model_name(path)),
                        members=tuple(_member_path(path.parent, m) for m in members),
                        weights=tuple(float(w) / total for w in weights),
                        sha256=sha256_of(path), shifts=tuple(shifts), raw=raw,
                        live_block=live_block, wiener=wiener)


def _wiener_settings(label: str, wiener: Any) -> dict[str, Any] | None:
    """The card's ``wiener`` section checked: None, or {"n_fft": int, "memory_seconds": s}."""
    if wiener is None:
        return None
    if not isinstance(wiener, dict) or set(wiener) - {"n_fft", "memory_seconds"}:
        raise ModelError(f"{label}: wiener should be an object with n_fft and memory_seconds, "
                         f"found {wiener!r}")
    settings = {**wiener_defaults, **wiener}
    error = settings_error(**settings)
    if error:
        raise ModelError(f"{label}: wiener {error}")
    return {"n_fft": settings["n_fft"], "memory_seconds": float(settings["memory_seconds"])}


def _member_path(folder: Path, member: str) -> Path:
    beside = folder / f"{member}.tflite"
    return beside if beside.is_file() else resolve(member)


class Ensemble(Stream):
    """The members' stems, each delayed to the slowest member's latency, weighted and summed.
    Allocates nothing per block after ``prepare`` (members run into preallocated blocks; the
    delays are rings): usable in an audio callback."""

    def __init__(self, card: EnsembleCard, threads: int = 1) -> None:
        self.card = card
        self.members = [Separator.load(m, threads=threads) for m in card.members]
        pinned = card.raw.get("member_sha256")
        if pinned is not None:
            found = [m.card.sha256 for m in self.members]
            if list(pinned) != found:
                changed = [m.card.name for m, a, b in zip(self.members, pinned, found) if a != b]
                raise ModelError(f"{card.path.name}: member(s) {', '.join(changed) or '?'} "
                                 "changed since the ensemble was measured (member_sha256)")
        first = self.members[0]
        for m in self.members[1:]:
            if m.stems != first.stems or m.sample_rate != first.sample_rate:
                raise ModelError(
                    f"{card.path.name}: members must share stems and sample rate: "
                    f"{first.card.name} has {','.join(first.stems)} at {first.sample_rate} "
                    f"Hz, {m.card.name} {','.join(m.stems)} at {m.sample_rate} Hz")
        self.shifts = card.shifts or (0,) * len(self.members)  # samples each member hears late
        self._shifted_any = any(self.shifts)  # read on every block: computed once
        totals = [m.latency_samples + s for m, s in zip(self.members, self.shifts)]
        slowest = int(np.argmax(totals))
        self._latency = totals[slowest]
        self._latency_terms = self.members[slowest].latency_terms
        if self.shifts[slowest]:
            self._latency_terms["shift"] = self.shifts[slowest]
        self._delays = [self._latency - t for t in totals]
        self._prepared = False

    @classmethod
    def load(cls, path: str | Path, threads: int = 1) -> Ensemble:
        return cls(read_ensemble_card(path), threads=threads)

    @property
    def stems(self) -> tuple[str, ...]:
        return self.members[0].stems

    @property
    def sample_rate(self) -> int:
        return self.members[0].sample_rate

    @property
    def latency_terms(self) -> dict[str, int]:
        """The slowest member's latency, term by term (the others are delayed to it)."""
        return dict(self._latency_terms)

    def prepare(self, sample_rate: int, max_block: int, channels: int) -> Ensemble:
        for m in self.members:
            m.prepare(sample_rate, max_block, channels)
        self._channels, self._max_block = channels, max_block
        shape = (len(self.stems), max_block, channels)
        self._blocks = [np.zeros(shape, np.float32) for _ in self.members]
        self._rings = [np.zeros((len(self.stems), next_pow2(d + max_block), channels),
                                np.float32) for d in self._delays]
        # Shifted members' input delay lines (one "stem" of input), and the block they read.
        self._in_rings = [np.zeros((1, next_pow2(s + max_block), channels), np.float32)
                          if s else None for s in self.shifts]
        self._in_block = np.zeros((1, max_block, channels), np.float32)
        self._shifted = np.zeros((1, max_block, channels), np.float32)
        self._flush_in = np.zeros((self._latency, channels), np.float32)
        self._prepared = True
        self.reset()
        return self

    def reset(self) -> None:
        self._require_prepared()
        for m in self.members:
            m.reset()
        for r in self._rings + [r for r in self._in_rings if r is not None]:
            r[:] = 0.0
        self._received = 0

    def process_into(self, block: np.ndarray, out: np.ndarray) -> None:
        """Separate ``block`` float32[frames <= max_block, channels] into ``out``
        float32[stems, frames, channels] (any strides). Allocates nothing: for callbacks."""
        n = self._fits(block, out)
        if self._shifted_any:
            self._in_block[0, :n] = block
        for i, m in enumerate(self.members):
            heard = block
            if self.shifts[i]:
                kernels.delay_mix(self._in_rings[i], self._received, self._in_block, n,
                                  self.shifts[i], 1.0, False, self._shifted)
                heard = self._shifted[0, :n]
            m.process_into(heard, self._blocks[i][:, :n])
            kernels.delay_mix(self._rings[i], self._received, self._blocks[i], n,
                              self._delays[i], self.card.weights[i], i > 0, out)
        self._received += n


def load_ensemble(path: str | Path, threads: int = 1) -> Stream:
    """The separator an ensemble card describes: the ensemble, behind its Wiener filter when
    the card has a ``wiener`` section (then one member is enough)."""
    card = read_ensemble_card(path)
    ens = Ensemble(card, threads=threads)
    if card.wiener is None:
        return ens
    return WienerFilter(ens, card=card, **card.wiener)
