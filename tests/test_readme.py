"""The README's examples run as written: the Python snippet, and the Quickstart's separation of
the bundled example with the default shipped model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtsep.engine import Separator, load
from rtsep.modelcard import (
    DEFAULT_MODEL,
    LIVE_DEFAULT_MODEL,
    model_name,
    read_card,
    shipped_ensembles,
    shipped_models,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "rtsep" / "examples" / "example.flac"
README = (ROOT / "README.md").read_text()


def test_python_snippets_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for code in blocks:
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr


def test_quickstart_separates_the_bundled_example(tmp_path: Path) -> None:
    line = next(ln for ln in README.splitlines() if ln.startswith("pip install . && rtsep file"))
    args = line.split("&& rtsep ", 1)[1].split()
    example = ROOT / args[1]
    res = subprocess.run([sys.executable, "-m", "rtsep", *args[:1], str(example), "-q"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr
    info = sf.info(example)
    outs = sorted((tmp_path / "separated").glob("*/example/*.wav"))
    assert [p.stem for p in outs] == ["bass", "drums", "other"]
    for p in outs:
        o = sf.info(p)
        assert (o.frames, o.samplerate, o.channels) == (info.frames, info.samplerate,
                                                        info.channels)


def test_models_lists_the_shipped_cards() -> None:
    res = subprocess.run([sys.executable, "-m", "rtsep", "models"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "(default)" in res.stdout, res.stdout + res.stderr
    assert f"{LIVE_DEFAULT_MODEL} (default for live and bench)" in res.stdout
    assert "validation SDR over the constant-gain floor" in res.stdout


def test_files_and_live_have_their_own_defaults() -> None:
    """The best separation for files, the lowest latency that separates for live use."""
    files, live = load(), load(live=True)
    assert (files.card.name, live.card.name) == (DEFAULT_MODEL, LIVE_DEFAULT_MODEL)
    assert live.latency_samples < files.latency_samples


@pytest.mark.parametrize("tflite", shipped_models(), ids=lambda p: p.stem)
def test_shipped_models_load_and_keep_their_cards_promise(tflite: Path) -> None:
    """Every shipped model passes the loader's checks and separates 2 s of the bundled
    example; when its card says the stems add up to the input (the default model must: a live
    remix at 0 dB is then transparent), they do."""
    card = read_card(tflite)
    promised = card.raw["sums_to_input"]
    assert promised or card.name not in (DEFAULT_MODEL, LIVE_DEFAULT_MODEL)
    x, _ = sf.read(EXAMPLE, dtype="float32", always_2d=True, frames=2 * 44100)
    stems = Separator.load(tflite).separate(x)
    assert stems.shape == (len(card.stems), *x.shape) and np.isfinite(stems).all()
    if promised:
        assert np.abs(stems.sum(axis=0) - x).max() <= 1e-4


@pytest.mark.parametrize("card", shipped_ensembles(), ids=model_name)
def test_shipped_ensembles_load_and_add_up_to_the_input(card: Path) -> None:
    """Every shipped ensemble loads (its members are shipped, unchanged since it was measured:
    member_sha256) and its stems add up to the input, as its members' do."""
    x, _ = sf.read(EXAMPLE, dtype="float32", always_2d=True, frames=2 * 44100)
    stems = load(model_name(card)).separate(x)
    assert stems.shape == (3, *x.shape) and np.isfinite(stems).all()
    assert np.abs(stems.sum(axis=0) - x).max() <= 1e-4
