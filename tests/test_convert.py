"""Keras -> TFLite: parity on shapes other than the traced one, quantisation, the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build_and_convert, music

from rtsep.cli import main
from rtsep.engine import Separator
from rtsep.modelcard import read_card, sha256_of


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    from rtsep.models.card import save_model
    from rtsep.models.unet import build

    keras.utils.set_random_seed(3)
    cfg = {"stems": 3, "filters": [4, 8, 16], "mask": "softmax"}
    model = build("seed", **cfg)
    path = tmp_path_factory.mktemp("keras") / "m.keras"
    card = {"variant": "seed", "config": cfg, "stems": ["drums", "bass", "other"],
            "sample_rate": 44100, "hop": 32,
            "runtime": {"context_frames": 16, "out_frames": 4, "lookahead_frames": 2}}
    return save_model(model, path, card)


@pytest.mark.parametrize("quantize", ["none", "float16", "int8"])
def test_convert_cli_parity_and_card(tmp_path: Path, keras_model: Path, quantize: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"m_{quantize}.tflite"
    assert main(["convert", str(keras_model), "-o", str(out), "--quantize", quantize]) == 0
    printed = capsys.readouterr().out
    assert f"parity ({quantize}): max relative error random" in printed and "ok" in printed
    card = read_card(out)
    assert (card.context_frames, card.out_frames, card.lookahead_frames) == (16, 4, 2)
    assert card.stems == ("drums", "bass", "other") and card.sha256 == sha256_of(out)
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["quantize"] == quantize and raw["sums_to_input"] is True
    assert "keras" in raw["versions"]


def test_tflite_matches_keras_on_other_batches(tmp_path: Path, keras_model: Path) -> None:
    from rtsep.convert.keras_to_tflite import convert, window_model
    from rtsep.models.card import load_model
    from rtsep.runtime import ModelRunner

    model, card = load_model(keras_model)
    out = convert(model, card, tmp_path / "p.tflite", context_frames=32, out_frames=8,
                  lookahead_frames=8)
    wrapped = window_model(model, 32, 8, 8)
    rc = read_card(out)
    rng = np.random.default_rng(0)
    for batch in (1, 2, 7):
        x = rng.normal(0, 0.3, (batch, 32, 64)).astype(np.float32)
        got = ModelRunner(rc, out.read_bytes(), batch, 1).run(x)
        ref = np.asarray(wrapped(x)["stems"])
        assert got.shape == (batch, 8, 3, 64)
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_softmax_seed_stems_sum_to_input(tmp_path: Path, keras_model: Path) -> None:
    out = tmp_path / "s.tflite"
    assert main(["convert", str(keras_model), "-o", str(out)]) == 0
    x = music(0.3, 2)
    sep = Separator.load(out).prepare(44100, 1024, 2)
    y = np.concatenate([sep.process(x), sep.flush()], axis=1)[:, sep.latency_samples:]
    assert np.abs(y.sum(axis=0) - x).max() <= 1e-4


def test_convert_errors(tmp_path: Path, keras_model: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path / "none.keras"), "-o", str(tmp_path / "x.tflite")]) == 1
    assert "Keras model not found" in capsys.readouterr().err
    lonely = tmp_path / "lonely.keras"
    lonely.write_bytes(keras_model.read_bytes())
    assert main(["convert", str(lonely), "-o", str(tmp_path / "x.tflite")]) == 1
    assert "training card lonely.json not found" in capsys.readouterr().err


@pytest.mark.parametrize("variant,config", [
    ("seed", {}), ("seed", {"mask": "softmax"}), ("seed", {"residual_last": True}),
    ("fb", {"residual_last": True, "basis": 32}), ("fb", {"basis": 16, "analysis_frames": 3}),
    ("fb", {"residual_last": True, "basis": 16, "compress": "log"}),
    ("fb", {"residual_last": True, "basis": 16, "analysis_frames": 4, "analysis": "dual"}),
])
@pytest.mark.parametrize("window", [(16, 4, 0), (16, 2, 5), (16, 16, 0), (32, 8, 8)])
def test_sliced_tail_equals_full_model(variant: str, config: dict,
                                       window: tuple[int, int, int]) -> None:
    """The converter computes the layers after the U-Net body only for the output frames;
    that must give exactly what the full model gives on those frames."""
    from rtsep.convert.keras_to_tflite import window_model
    from rtsep.models.unet import build

    model = build(variant, stems=3, filters=(4, 8), **config)
    context, out_frames, lookahead = window
    x = np.random.default_rng(1).normal(0, 0.3, (2, context, 64)).astype(np.float32)
    wm = window_model(model, *window)
    assert any(layer.name == "tail_in" for layer in wm.layers)  # the sliced path was taken
    fast = np.asarray(wm(x)["stems"])
    full = np.asarray(window_model(model, *window, sliced=False)(x)["stems"])
    assert fast.shape == (2, out_frames, 3, 64)
    assert np.abs(fast - full).max() <= 1e-6 * max(1.0, np.abs(full).max())


def test_log_compressed_filterbank_converts_with_parity(tmp_path: Path) -> None:
    """compress="log" (the U-Net sees log features) converts to TFLite within the float
    tolerance on random input and real music, and the stems still add up to the input."""
    from rtsep.convert.parity import check

    tflite, model = build_and_convert(tmp_path, "fblog", variant="fb", stems=("a", "b", "c"),
                                      residual_last=True, basis=16, compress="log")
    report = check(model, tflite, music(2.0)[:, 0], "none")
    assert report.ok, report.line()
    x = music(1.0)
    stems = Separator.load(tflite).separate(x)
    assert np.abs(stems.sum(axis=0) - x).max() < 1e-4
