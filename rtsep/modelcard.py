"""Model cards: the JSON that makes a .tflite describe itself, and where shipped models live.

A model is ``<name>.tflite`` with ``<name>.json`` beside it. The card holds what the engine needs
(stems, sample rate, frame, hop, window, context, out_frames, lookahead, signature keys), what
the model is (variant, architecture config, training data and recipe, validation SDR, library
versions) and the sha256 of the .tflite (a hash cannot live inside the file it hashes). Loading
checks all of it before any audio is touched, and a mismatch is a one-line ModelError saying
what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ModelError
from .framing import FRAME

CARD_FORMAT = "rtsep-model/1"
#: The default for files and evaluation (the best separation: an ensemble behind the Wiener
#: filter, rtsep/ensemble.py), and for live use and the latency benchmark (the lowest
#: latency that separates): one quality model, one live model.
DEFAULT_MODEL = "specrf-fbwg-w-openmsx"
LIVE_DEFAULT_MODEL = "fb-openmsx"
KINDS = ("window", "stateful")

# field -> type(s) accepted; checked before anything else is read.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str, "name": str, "variant": str, "kind": str, "stems": list,
    "sample_rate": int, "frame": int, "hop": int, "window": str, "context_frames": int,
    "out_frames": int, "lookahead_frames": int, "signature": dict, "sha256": str,
}


@dataclass(frozen=True)
class ModelCard:
    """The parsed, validated card of one model file."""

    path: Path
    name: str
    variant: str
    kind: str
    stems: tuple[str, ...]
    sample_rate: int
    frame: int
    hop: int
    window: str
    context_frames: int
    out_frames: int
    lookahead_frames: int
    signature_key: str
    input_key: str
    output_key: str
    sha256: str
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: Smallest live block measured to keep up (``rtsep bench``), or None if never measured.
    live_block: int | None = None
    #: Stateful models: floats of state per channel, and its input/output signature keys.
    state_size: int = 0
    state_input_key: str = ""
    state_output_key: str = ""

    @property
    def stateful(self) -> bool:
        return self.kind == "stateful"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(tflite: Path) -> Path:
    return tflite.with_suffix(".json")


def expected_window(hop: int, frame: int = FRAME) -> str:
    return "rect" if hop == frame else "hann"


def read_card(tflite: str | Path) -> ModelCard:
    """Parse and check the card beside ``tflite`` and the file's hash (not the graph)."""
    tflite = Path(tflite)
    if not tflite.is_file():
        raise ModelError(f"model file not found: {tflite}")
    cpath = card_path(tflite)
    if not cpath.is_file():
        raise ModelError(f"{tflite.name}: model card {cpath.name} not found beside it")
    try:
        raw = json.loads(cpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{cpath.name}: not a readable JSON model card ({e})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{cpath.name}: expected a JSON object, found {type(raw).__name__}")
    for key, typ in _REQUIRED.items():
        if key not in raw:
            raise ModelError(f"{cpath.name}: missing field {key!r}")
        if not isinstance(raw[key], typ) or isinstance(raw[key], bool):
            raise ModelError(f"{cpath.name}: field {key!r} should be {_tname(typ)}, "
                             f"found {raw[key]!r}")
    if raw["format"] != CARD_FORMAT:
        raise ModelError(f"{cpath.name}: card format {raw['format']!r} is not supported "
                         f"(expected {CARD_FORMAT!r})")
    if raw["kind"] not in KINDS:
        raise ModelError(f"{cpath.name}: model kind {raw['kind']!r} is not supported by this "
                         f"rtsep (supported: {', '.join(KINDS)})")
    _check_geometry(cpath.name, raw)
    sig = raw["signature"]
    for key in ("key", "input", "output"):
        if not isinstance(sig.get(key), str):
            raise ModelError(f"{cpath.name}: signature needs a string {key!r}, found {sig!r}")
    state = _check_state(cpath.name, raw)
    live_block = raw.get("live_block")
    if live_block is not None and (not isinstance(live_block, int) or isinstance(
            live_block, bool) or live_block < 1):
        raise ModelError(f"{cpath.name}: live_block should be a positive integer, found "
                         f"{live_block!r}")
    found = sha256_of(tflite)
    if found != raw["sha256"]:
        raise ModelError(f"{tflite.name}: sha256 mismatch: expected {raw['sha256'][:16]}... "
                         f"(from {cpath.name}), found {found[:16]}...")
    return ModelCard(
        path=tflite, name=raw["name"], variant=raw["variant"], kind=raw["kind"],
        stems=tuple(raw["stems"]), sample_rate=raw["sample_rate"], frame=raw["frame"],
        hop=raw["hop"], window=raw["window"], context_frames=raw["context_frames"],
        out_frames=raw["out_frames"], lookahead_frames=raw["lookahead_frames"],
        signature_key=sig["key"], input_key=sig["input"], output_key=sig["output"],
        sha256=found, raw=raw, live_block=live_block, **state)


def _tname(typ: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))


def _check_geometry(name: str, raw: dict[str, Any]) -> None:
    stems = raw["stems"]
    if not stems or not all(isinstance(s, str) and s for s in stems) or len(set(stems)) != len(
            stems):
        raise ModelError(f"{name}: stems should be distinct non-empty names, found {stems!r}")
    if raw["frame"] != FRAME:
        raise ModelError(f"{name}: frame should be {FRAME}, found {raw['frame']}")
    hop = raw["hop"]
    if hop <= 0 or FRAME % hop:
        raise ModelError(f"{name}: hop should divide {FRAME}, found {hop}")
    if raw["window"] != expected_window(hop):
        raise ModelError(f"{name}: window for hop {hop} should be {expected_window(hop)!r}, "
                         f"found {raw['window']!r}")
    if raw["sample_rate"] <= 0:
        raise ModelError(f"{name}: sample_rate should be positive, found {raw['sample_rate']}")
    c, f, la = raw["context_frames"], raw["out_frames"], raw["lookahead_frames"]
    if c < 1 or f < 1 or la < 0 or (f + la > c and raw["kind"] == "window"):
        raise ModelError(f"{name}: need 1 <= out_frames and out_frames + lookahead_frames <= "
                         f"context_frames, found out_frames={f}, lookahead_frames={la}, "
                         f"context_frames={c}")


def _check_state(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A stateful model's invoke takes exactly the new frames (context == out_frames) plus
    ``state[batch, size]`` and returns the next state under its own key; with lookahead L its
    outputs are the frames L before the newest (it keeps the delay line in its state)."""
    if raw["kind"] != "stateful":
        return {}
    c, f = raw["context_frames"], raw["out_frames"]
    if c != f:
        raise ModelError(f"{name}: a stateful model needs context_frames == out_frames, found "
                         f"context_frames={c}, out_frames={f}")
    st, sig = raw.get("state"), raw["signature"]
    if not isinstance(st, dict) or not isinstance(st.get("size"), int) or st["size"] < 1:
        raise ModelError(f"{name}: a stateful model needs state.size (a positive integer), "
                         f"found {st!r}")
    for key in ("state_input", "state_output"):
        if not isinstance(sig.get(key), str):
            raise ModelError(f"{name}: a stateful model's signature needs a string {key!r}, "
                             f"found {sig!r}")
    return {"state_size": st["size"], "state_input_key": sig["state_input"],
            "state_output_key": sig["state_output"]}


def write_card(tflite: str | Path, fields: dict[str, Any]) -> Path:
    """Write ``<name>.json`` beside ``tflite`` with its sha256; returns the card's path."""
    tflite = Path(tflite)
    card = {"format": CARD_FORMAT, **fields, "sha256": sha256_of(tflite)}
    path = card_path(tflite)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def shipped_dir() -> Path:
    """Folder of the shipped models (package data of rtsep.models)."""
    return Path(str(resources.files("rtsep.models") / "shipped"))


def shipped_models() -> list[Path]:
    """The shipped .tflite files, sorted by name."""
    d = shipped_dir()
    return sorted(d.glob("*.tflite")) if d.is_dir() else []


ENSEMBLE_SUFFIX = ".ensemble.json"


def shipped_ensembles() -> list[Path]:
    """The shipped ensemble cards (``rtsep.ensemble``), sorted by name."""
    d = shipped_dir()
    return sorted(d.glob(f"*{ENSEMBLE_SUFFIX}")) if d.is_dir() else []


def model_name(path: Path) -> str:
    """The name a model file or ensemble card is called by."""
    name = path.name
    return name[:-len(ENSEMBLE_SUFFIX)] if name.endswith(ENSEMBLE_SUFFIX) else path.stem


def resolve(model: str | Path | None, live: bool = False) -> Path:
    """A shipped name (a model or an ensemble), a path to a .tflite or an ensemble card, or
    None for the default shipped model (for live use with ``live``)."""
    if model is None:
        model = LIVE_DEFAULT_MODEL if live else DEFAULT_MODEL
    p = Path(model)
    if p.suffix in (".tflite", ".json") or p.exists() or "/" in str(model):
        return p
    shipped = shipped_models() + shipped_ensembles()
    for cand in shipped:
        if model_name(cand) == str(model):
            return cand
    names = ", ".join(sorted(model_name(c) for c in shipped)) or "none"
    raise ModelError(f"unknown model {str(model)!r}: shipped models are {names}; "
                     "or give a path to a .tflite file or an ensemble card")
