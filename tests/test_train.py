"""rtsep train on tiny synthetic data: the loss goes down, checkpoint/plot/card are written,
--resume continues, and the trained model converts and runs in the engine."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtsep.cli import main


def write_song(folder: Path, seed: int, seconds: float = 2.0, rate: int = 44100) -> None:
    """Three distinguishable stems: a low sine bass line, noise-burst drums, a high chord."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 55 * 2 ** (rng.integers(0, 12) / 12)
    bass = 0.3 * np.sin(2 * np.pi * f0 * t)
    env = np.exp(-((t * 4) % 1) * 30)
    drums = 0.4 * env * rng.normal(size=t.size)
    other = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (880 + 50 * seed, 1320, 1760))
    folder.mkdir(parents=True)
    stems = {"drums": drums, "bass": bass, "other": other}
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", np.stack([x, x], 1).astype(np.float32), rate,
                 subtype="FLOAT")
    mix = sum(stems.values())
    sf.write(folder / "mixture.wav", np.stack([mix, mix], 1).astype(np.float32), rate,
             subtype="FLOAT")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for i in range(3):
        write_song(root / "train" / f"song{i}", i)
    write_song(root / "valid" / "held", 9)
    return root


@pytest.mark.parametrize("loss", ["mae", "sdr", "sdr-batch"])
def test_training_lowers_loss_and_writes_artifacts(tmp_path: Path, tiny_data: Path,
                                                   loss: str) -> None:
    run = tmp_path / "run"
    common = ["train", "--data", str(tiny_data), "--variant", "fb", "--out", str(run),
              "--loss", loss,
              "--filters", "8,16", "--context-frames", "16", "--out-frames", "2",
              "--lookahead-frames", "2", "--batch", "8", "--steps-per-epoch", "30",
              "--val-windows", "32", "--config", '{"basis": 32}', "--threads", "1"]
    assert main([*common, "--epochs", "2", "--eval-seconds", "1"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["sdr_db"]) == {"drums", "bass", "other", "mean"}
    assert (run / "eval.png").is_file() and (run / "model.tflite").is_file()
    state = json.loads((run / "state.json").read_text())
    hist = state["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "model.keras").is_file() and list((run / "ckpt").glob("ckpt-2*"))
    card = json.loads((run / "model.json").read_text())
    assert card["variant"] == "fb" and card["stems"] == ["drums", "bass", "other"]
    assert card["training"]["epochs"] in (1, 2)
    assert card["training"]["command"] == "rtsep " + shlex.join(
        [*common, "--epochs", "2", "--eval-seconds", "1"])

    # Without --resume an existing run is refused; with it, training continues at epoch 3.
    assert main([*common, "--epochs", "3", "--eval-seconds", "0"]) == 1
    assert main([*common, "--epochs", "3", "--resume", "--eval-seconds", "0",
                 "--ema", "0.9"]) == 0
    assert json.loads((run / "last.json").read_text())["training"]["weights_ema"] == 0.9
    state = json.loads((run / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    # Both starts are in the card, with the epoch each began after, and in the shipped text.
    from rtsep.models.ship import training_commands
    training = json.loads((run / "last.json").read_text())["training"]
    assert [epoch for epoch, _ in training["phases"]] == [0, 2]
    assert training_commands(training).startswith("from epoch 1: `rtsep ")

    # --init starts a new run from the trained weights (fine-tuning): it begins where the
    # first run ended, far below that run's first epoch; another architecture is refused.
    ft = tmp_path / "ft"
    tuned = [a if a != str(run) else str(ft) for a in common]
    assert main([*tuned, "--epochs", "1", "--eval-seconds", "0", "--init",
                 str(run / "model.keras")]) == 0
    first = json.loads((ft / "state.json").read_text())["history"][0]
    assert first["train_loss"] < hist[0]["train_loss"]
    ft_training = json.loads((ft / "model.json").read_text())["training"]
    source = json.loads((run / "model.json").read_text())["training"]
    assert ft_training["init"]["model"] == str(run / "model.keras")
    assert ft_training["init"]["cpu_hours"] == source["cpu_hours"]
    # The shipped card states the cost of both runs.
    from rtsep.models.ship import cost_line
    assert cost_line(ft_training).endswith(
        f"{ft_training['cpu_hours'] + source['cpu_hours']:.2f} hours in all")
    other = [a if a != '{"basis": 32}' else '{"basis": 16}' for a in tuned]
    assert main([*other, "--out", str(tmp_path / "ft2"), "--epochs", "1", "--eval-seconds",
                 "0", "--init", str(run / "model.keras")]) == 1

    # The trained model converts (parity checked) and its stems add up to the input.
    out = tmp_path / "t.tflite"
    assert main(["convert", str(run / "model.keras"), "-o", str(out)]) == 0
    from rtsep.engine import Separator

    sep = Separator.load(out).prepare(44100, 4096, 2)
    x = sf.read(tiny_data / "valid" / "held" / "mixture.wav", dtype="float32")[0][:20000]
    y = np.concatenate([sep.process(x), sep.flush()], axis=1)[:, sep.latency_samples:]
    assert np.abs(y.sum(axis=0) - x).max() < 1e-4


def test_several_data_folders_train_on_all_and_validate_on_the_first(
        tmp_path: Path, tiny_data: Path) -> None:
    extra = tmp_path / "extra"
    for i in range(2):
        write_song(extra / "train" / f"gen{i}", 20 + i)
    write_song(extra / "valid" / "gen_held", 30)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--data", str(extra), "--variant", "fb",
                 "--out", str(run), "--filters", "8,16", "--context-frames", "16",
                 "--batch", "4", "--steps-per-epoch", "2", "--val-windows", "8", "--config",
                 '{"basis": 16}', "--threads", "1", "--epochs", "1", "--eval-seconds", "0",
                 "--loss-frames", "4", "--lookahead-frames", "2"]) == 0
    training = json.loads((run / "model.json").read_text())["training"]
    # --loss-frames 4 at lookahead 2 in a 16-frame window scores frames 10..13: samples
    # 11*32 .. 14*32, where both frames covering each sample are among them.
    assert "samples 352-448" in training["recipe"]["loss_frames"]
    assert training["train_songs"] == 3 + 2
    assert training["valid_songs"] == ["held"]
    assert training["data"] == f"{tiny_data} + {extra}"
    assert "exclude_stems" not in training


def test_exclude_stem_keeps_a_folders_stem_out_of_training(
        tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture) -> None:
    """--exclude-stem DIR=STEM: recorded in the card; with every folder's drums kept out,
    nothing can give drums, which is a one-line error (so the exclusion is applied)."""
    extra = tmp_path / "extra"
    write_song(extra / "train" / "gen0", 20)
    base = ["train", "--data", str(tiny_data), "--data", str(extra), "--variant", "fb",
            "--filters", "8,16", "--context-frames", "16", "--batch", "4",
            "--steps-per-epoch", "2", "--val-windows", "8", "--config", '{"basis": 16}',
            "--threads", "1", "--epochs", "1", "--eval-seconds", "0"]
    run = tmp_path / "run"
    assert main([*base, "--out", str(run), "--exclude-stem", f"{extra}=drums"]) == 0
    training = json.loads((run / "model.json").read_text())["training"]
    assert training["exclude_stems"] == {str(extra): ["drums"]}
    capsys.readouterr()
    both = ["--exclude-stem", f"{extra}=drums", "--exclude-stem", f"{tiny_data}/=drums"]
    assert main([*base, "--out", str(tmp_path / "none"), *both]) == 1
    err = capsys.readouterr().err
    assert "no track has a usable 'drums' stem" in err and err.count("\n") == 1
    assert main([*base, "--out", str(tmp_path / "x"), "--exclude-stem", "elsewhere=bass"]) == 1
    err = capsys.readouterr().err
    assert "elsewhere is not one of the --data folders" in err and err.count("\n") == 1


def test_loss_span_covers_samples_whose_frames_are_all_scored() -> None:
    from rtsep.models.train import ConfigError, loss_span, window_samples

    hop, frame = 32, 64
    for context in (16, 64):  # whole window: all but the half-frames at either edge
        assert loss_span(hop, context) == (frame - hop, window_samples(context, hop) - hop)
    assert loss_span(hop, 64, tail=16) == (49 * hop, 64 * hop)
    assert loss_span(hop, 64, tail=16, lookahead=8) == (41 * hop, 56 * hop)
    assert loss_span(hop, 64, delay=4) == (hop, 60 * hop)
    with pytest.raises(ConfigError, match="does not fit"):
        loss_span(hop, 16, tail=16, lookahead=2)


def test_bad_data_folder_is_one_line_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtsep: error: data folder not found") and err.count("\n") == 1


def test_tcn_trains_on_whole_excerpts_and_ships_stateful(tmp_path: Path, tiny_data: Path
                                                        ) -> None:
    """The causal TCN with the level-normalised loss: the loss goes down, and the converted
    model is the stateful kind, whose stems add up to the input."""
    from rtsep.modelcard import read_card

    run = tmp_path / "run"
    tiny = '{"basis": 16, "bottleneck": 8, "hidden": 8, "dilations": 3, "repeats": 1}'
    args = ["train", "--data", str(tiny_data), "--variant", "tcn", "--out", str(run),
            "--loss", "mae-stem", "--context-frames", "64", "--out-frames", "4",
            "--batch", "4", "--steps-per-epoch", "30", "--val-windows", "16",
            "--config", tiny, "--threads", "1", "--epochs", "2", "--eval-seconds", "1"]
    assert main(args) == 0
    hist = json.loads((run / "state.json").read_text())["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    card = read_card(run / "model.tflite")
    assert card.stateful and card.out_frames == 4 and card.lookahead_frames == 0
    assert json.loads((run / "model.json").read_text())["training"]["recipe"]["loss"].startswith(
        "MAE of overlap-added stems, each stem")
    assert main([*args[:-4], "--epochs", "3", "--lookahead-frames", "2", "--resume"]) == 1


def test_cunet_trains_on_whole_excerpts_and_ships_stateful(tmp_path: Path, tiny_data: Path,
                                                          capsys: pytest.CaptureFixture
                                                          ) -> None:
    """The causal streaming U-Net: the loss goes down, the converted model streams 4 new
    frames per invoke; a block that is not whole coarse frames is a one-line error."""
    from conftest import TINY_CUNET

    from rtsep.convert.keras_to_tflite import convert
    from rtsep.modelcard import read_card
    from rtsep.models.card import load_model

    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--variant", "cunet", "--out", str(run),
            "--context-frames", "64", "--batch", "4", "--steps-per-epoch", "30",
            "--val-windows", "16", "--config", json.dumps(TINY_CUNET), "--threads", "1",
            "--eval-seconds", "0", "--out-frames", "4", "--epochs", "2"]
    assert main(args) == 0
    hist = json.loads((run / "state.json").read_text())["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    model, train_card = load_model(run / "model.keras")
    card = read_card(convert(model, train_card, tmp_path / "c.tflite"))  # its runtime defaults
    assert card.stateful and card.out_frames == 4 and card.lookahead_frames == 0
    capsys.readouterr()
    assert main([*args[:-4], "--out-frames", "6", "--epochs", "1", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "--out-frames must be a multiple of 4" in err and err.count("\n") == 1
    i = args.index("--context-frames")
    default = args[:i] + args[i + 2:]  # the recipe's excerpt length
    default[default.index("--steps-per-epoch") + 1] = "1"
    assert main([*default, "--epochs", "1", "--out", str(tmp_path / "default")]) == 0
    recipe = json.loads((tmp_path / "default" / "model.json").read_text())["training"]["recipe"]
    assert recipe["window_samples"] == (2048 - 1) * 32 + 64
    capsys.readouterr()
    short = [*args, "--context-frames", "16", "--out", str(tmp_path / "short")]
    assert main(short) == 1  # excerpts shorter than the receptive field (28 frames)
    err = capsys.readouterr().err
    assert "receptive field (28 frames)" in err and err.count("\n") == 1


def test_sdr_batch_loss_is_minus_the_mdx_sdr_per_stem() -> None:
    """An estimate at half the level of one stem and exact for the other has SDR
    10 log10(4) = 6.02 dB and (almost) the floor's: the loss is minus their mean."""
    import tensorflow as tf

    from rtsep.models.train import frames_of, ola_loss_fn, window_samples

    hop, context = 32, 16
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 2, window_samples(context, hop))).astype(np.float32)
    frames = tf.stack([frames_of(target[:, k], hop) for k in range(2)], axis=2)  # [b, T, 2, 64]
    est = frames * tf.constant([0.5, 1.0])[None, None, :, None]
    loss = float(ola_loss_fn(hop, context, "sdr-batch")(target, est))
    ref = float(np.sum(target[..., 32:-32] ** 2, axis=(0, 2))[1])
    exact = 10 * np.log10((ref + 1e-6) / 1e-6)
    assert loss == pytest.approx(-(10 * np.log10(4) + exact) / 2, abs=0.05)


def test_grown_analysis_window_starts_as_the_source_model() -> None:
    import keras

    from rtsep.models.train import grown_weights
    from rtsep.models.unet import build

    keras.utils.set_random_seed(3)
    cfg = {"filters": (8, 16), "basis": 16, "dropout": 0.0, "residual_last": True}
    small = build("fb", **cfg)
    wide = build("fb", analysis_frames=4, **cfg)
    wide.set_weights(grown_weights(wide.get_weights(), small.get_weights()))
    x = np.random.default_rng(0).normal(size=(2, 16, 64)).astype(np.float32)
    np.testing.assert_allclose(wide(x, training=False), small(x, training=False), atol=1e-5)
    wider = build("fb", analysis_frames=6, **cfg)  # and again, from 4 taps to 6
    wider.set_weights(grown_weights(wider.get_weights(), wide.get_weights()))
    np.testing.assert_allclose(wider(x, training=False), small(x, training=False), atol=1e-5)
    other = build("fb", **{**cfg, "basis": 8})
    with pytest.raises(ValueError, match="shape"):
        grown_weights(other.get_weights(), small.get_weights())
    with pytest.raises(ValueError, match="shape"):  # a shorter bias is not padded
        grown_weights([np.zeros(16, np.float32)], [np.zeros(8, np.float32)])


def test_refining_blocks_grow_onto_a_trained_spec_model() -> None:
    """``--init`` into a spec model with ``refine_dilations``: the source's layers are found by
    name, the new blocks keep their identity start, so the grown model computes exactly the
    source's output; a source layer the model lacks is refused."""
    import keras
    from conftest import TINY_SPEC, music

    from rtsep.models.train import warm_start_weights
    from rtsep.models.unet import build

    keras.utils.set_random_seed(5)
    cfg = {"stems": 2, **TINY_SPEC}
    source = build("spec", **cfg)
    for layer in source.layers:  # trained-looking batch-norm statistics, not the defaults
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.1, np.float32))
    grown = build("spec", **cfg, refine_dilations=[1, 2])
    added = warm_start_weights(grown, source)
    assert added == ["refine0_conv", "refine0_bn", "refine1_conv", "refine1_bn"]
    x = music(0.3, channels=1)[:, 0][: 64 * 96].reshape(1, -1, 64)
    want = np.asarray(source(x, training=False))
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(np.asarray(grown(x, training=False)), want, atol=1e-6)
    with pytest.raises(ValueError, match="refine1_conv"):
        warm_start_weights(build("spec", **cfg, refine_dilations=[1]), grown)
