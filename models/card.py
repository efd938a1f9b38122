"""Saving and loading trained Keras models with the card that describes them.

``run/model.keras`` is saved beside ``run/model.json``: variant, constructor config, stems,
sample rate, hop, training data and recipe, validation figures. The converter reads that card to
write the runtime card of the .tflite, so a model never loses what it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rtsep.errors import ModelError

REQUIRED = ("variant", "config", "stems", "sample_rate", "hop")


def save_model(model: Any, path: str | Path, card: dict[str, Any]) -> Path:
    """Save ``model`` to ``path`` (.keras) and its card beside it, atomically."""
    path = Path(path)
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"card misses {missing}")
    tmp = path.with_name(path.stem + ".part.keras")
    model.save(tmp)
    tmp.replace(path)
    cpath = path.with_suffix(".json")
    ctmp = cpath.with_name(cpath.name + ".part")
    ctmp.write_text(json.dumps(card, indent=2) + "\n")
    ctmp.replace(cpath)
    return path


def load_card(path: str | Path) -> dict[str, Any]:
    """The training card beside a .keras file, checked for the fields conversion needs."""
    path = Path(path)
    cpath = path.with_suffix(".json")
    if not path.is_file():
        raise ModelError(f"Keras model not found: {path}")
    if not cpath.is_file():
        raise ModelError(f"{path.name}: training card {cpath.name} not found beside it")
    try:
        card = json.loads(cpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{cpath.name}: unreadable card ({e})") from None
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ModelError(f"{cpath.name}: missing fields {missing}")
    return card


def load_model(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Load a .keras model (with rtsep's custom layers registered) and its card."""
    import keras

    from . import spec, unet  # noqa: F401 - register the custom layers

    card = load_card(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - keras raises many kinds
        raise ModelError(f"{Path(path).name}: cannot load Keras model "
                         f"({str(e).splitlines()[0]})") from None
    return model, card
