"""``rtsep train``: train a U-Net variant on rendered stems or MUSDB18-HQ, resumably.

Training matches run time: every example is one model window (``context`` frames of 64 samples
at hop H, the exact input the engine feeds), and the loss is the mean absolute error of the
overlap-added stems (synthesis window included) over the window's fully covered samples.
Batches stream from disk (``ExcerptSampler``: random excerpts, stems remixed across songs, random
gains, random channel) in a background thread. Every epoch: a checkpoint (model + optimizer,
``--resume`` continues from it), validation loss on fixed validation windows, ``history.json``,
``loss.png``; the best epoch is kept as ``model.keras`` with its card. ``--hours`` stops cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import queue
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtsep.errors import ConfigError
from rtsep.framing import FRAME, synthesis_window

from .card import save_model
from .data.excerpts import ExcerptSampler
from .data.musdb import DataLayoutError, common_stems, load_tracks

RECIPES: dict[str, dict[str, Any]] = {
    # The seed, faithful: raw-sample masks, MAE, Adam 1e-3.
    "seed": {"variant": "seed", "config": {"mask": "sigmoid"}},
    # Learned filterbank; last stem = input - others, so the stems always add up to the input.
    "fb": {"variant": "fb", "config": {"mask": "sigmoid", "residual_last": True,
                                        "basis": 256}},
    # The same with a causal analysis window of 8 frames (288 samples) per basis channel.
    "fbc": {"variant": "fb", "config": {"mask": "sigmoid", "residual_last": True,
                                         "basis": 256, "analysis_frames": 8}},
    # A 512-sample analysis window centred on each frame (needs lookahead 8 at run time).
    "fbx": {"variant": "fb", "config": {"mask": "sigmoid", "residual_last": True,
                                         "basis": 256, "analysis_frames": 8,
                                         "analysis": "centered"}},
    # Both bases side by side (64 samples for drums, centred 512 for bass) in front of a wider
    # U-Net without dropout (the narrow seed widths after 256 basis channels underfit).
    "fbd": {"variant": "fb", "config": {"mask": "sigmoid", "residual_last": True,
                                         "basis": 256, "analysis_frames": 8, "analysis": "dual",
                                         "filters": [64, 64, 128, 128, 256, 512],
                                         "dropout": 0.0}, "loss": "sdr-batch"},
    # Causal dilated TCN (models/tcn.py): 0.74 s of past context, streams with state. Trained
    # on long excerpts (every frame in the loss); gradients clipped like Conv-TasNet's.
    "tcn": {"variant": "tcn", "config": {"mask": "sigmoid", "residual_last": True,
                                         "basis": 256}, "clipnorm": 5.0,
            "context_frames": 2048},
    # Causal streaming U-Net (models/cunet.py): the fb U-Net's halving levels made causal, a
    # dilated TCN at 1/16 of the frame rate (0.83 s of context); trained on long excerpts.
    "cunet": {"variant": "cunet", "config": {"mask": "sigmoid", "residual_last": True,
                                             "basis": 256}, "loss": "sdr-batch",
              "clipnorm": 5.0, "context_frames": 2048},
    # Masks on a 2048-point STFT (models/spec.py): frequency resolution for bass, paid for in
    # latency (about 60 ms of lookahead); hop 64 (rectangular frames that tile the signal).
    # Trained full-sequence on 3-s excerpts; the runtime window holds its receptive field.
    "spec": {"variant": "spec", "config": {"residual_last": True}, "loss": "sdr-batch",
             "clipnorm": 5.0, "context_frames": 2048, "hop": 64, "out_frames": 64},
}


def parse_data(spec: str) -> tuple[Path, str, str]:
    """``DIR`` (rendered: train/valid) or ``musdb:PATH`` (train/test)."""
    if spec.startswith("musdb:"):
        return Path(spec[len("musdb:"):]), "train", "test"
    return Path(spec), "train", "valid"


def data_specs(args: argparse.Namespace) -> list[str]:
    """The ``--data`` folders in order (one string when called with a plain Namespace); the
    first one's validation songs are the yardstick."""
    return [args.data] if isinstance(args.data, str) else list(args.data)


def stem_exclusions(args: argparse.Namespace) -> dict[str, frozenset[str]]:
    """``--exclude-stem DIR=STEM`` as {--data spec: stems kept out of its training songs}."""
    specs = data_specs(args)
    out: dict[str, set[str]] = {}
    for item in getattr(args, "exclude_stem", None) or []:
        folder, sep, stem = item.rpartition("=")
        if not sep or not folder or not stem:
            raise ConfigError(f"--exclude-stem {item!r}: expected DIR=STEM")
        spec = next((d for d in specs if d == folder or Path(d) == Path(folder)), None)
        if spec is None:
            raise ConfigError(f"--exclude-stem {item!r}: {folder} is not one of the --data "
                              f"folders ({', '.join(specs)})")
        out.setdefault(spec, set()).add(stem)
    return {k: frozenset(v) for k, v in out.items()}


def window_samples(context: int, hop: int) -> int:
    return (context - 1) * hop + FRAME


LOSSES = ("mae", "mae-stem", "sdr", "sdr-batch")


def loss_span(hop: int, context: int, delay: int = 0, tail: int = 0, lookahead: int = 0,
              ) -> tuple[int, int]:
    """Samples [lo, hi) of a window whose every covering frame is estimated: frames
    ``[0, context - delay)``, or with ``tail`` only the ``tail`` frames that end ``lookahead``
    frames before the window's end (what the engine emits per invoke). Sample n is covered by
    frames n // hop - 1 and n // hop (FRAME = 2 hop)."""
    last = context - delay - lookahead
    first = last - tail if tail else 0
    if first < 0 or last <= first:
        raise ConfigError(f"--loss-frames {tail} with lookahead {lookahead} does not fit a "
                          f"{context}-frame window")
    return (first + 1) * hop, last * hop


def ola_loss_fn(hop: int, context: int, kind: str = "mae", delay: int = 0,
                span: tuple[int, int] | None = None) -> Any:
    """Loss between the overlap-added estimate and the target stems over the samples ``span``
    (default: every sample the frames cover; see ``loss_span``). est [batch, T, stems, 64]
    (model output), target [batch, stems, samples]. ``delay``: output step t estimates frame
    t - delay (a stateful model with lookahead), so the first ``delay`` steps are dropped and
    the last ``delay`` frames have no estimate.

    ``mae``: the seed's mean absolute error. ``sdr``: minus the MDX-form SDR per example and
    stem, averaged: every stem counts the same whatever its level (drums are mixed 10-20 dB
    below the rest in the rendered data, so MAE nearly ignores them). A small floor relative to
    the mixture's energy keeps silent targets from dominating. ``mae-stem``: the MAE of each
    stem divided by that stem's mean absolute level over the batch, averaged over stems: every
    stem counts the same, without ``sdr``'s per-example ratios (silent excerpts cannot
    dominate a whole batch). ``sdr-batch``: minus the SDR of each stem over the whole batch
    (errors and references summed over every example, as the MDX form sums over a song),
    averaged over stems: the evaluation's measure, with each stem's error weighted by the
    inverse of its current size."""
    import tensorflow as tf

    if kind not in LOSSES:
        raise ConfigError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")
    w = tf.constant(synthesis_window(hop))
    lo, hi = span or loss_span(hop, context, delay)

    def loss(target: Any, est: Any) -> Any:
        frames = tf.transpose(est[:, delay:], [0, 2, 1, 3]) * w  # [batch, stems, T', 64]
        y = tf.signal.overlap_and_add(frames, hop)[..., lo:hi]
        s = target[..., lo:hi]
        if kind == "mae":
            return tf.reduce_mean(tf.abs(y - s))
        if kind == "mae-stem":
            err = tf.reduce_mean(tf.abs(y - s), axis=[0, 2])  # [stems]
            level = tf.reduce_mean(tf.abs(s), axis=[0, 2]) + 1e-4
            return tf.reduce_mean(err / level)
        if kind == "sdr-batch":  # sums over examples and samples: one ratio per stem
            err = tf.reduce_sum(tf.square(y - s), axis=[0, 2]) + 1e-6
            ref = tf.reduce_sum(tf.square(s), axis=[0, 2]) + 1e-6
        else:  # sdr: one ratio per example and stem, floored relative to the mixture
            mix_energy = tf.reduce_sum(tf.square(tf.reduce_sum(s, axis=1)), axis=-1,
                                       keepdims=True)
            floor = 1e-3 * mix_energy / float(s.shape[1]) + 1e-8  # [batch, 1]
            err = tf.reduce_sum(tf.square(y - s), axis=-1) + floor
            ref = tf.reduce_sum(tf.square(s), axis=-1) + floor
        ten_over_ln10 = 4.342944819  # minus SDR in dB = 10 log10(err / ref)
        return tf.reduce_mean(ten_over_ln10 * (tf.math.log(err) - tf.math.log(ref)))

    return loss


def frames_of(mix: Any, hop: int) -> Any:
    import tensorflow as tf

    return tf.signal.frame(mix, FRAME, hop)  # [batch, T, 64]


class Prefetcher:
    """Draws batches from the sampler in a thread, so disk reads overlap training steps."""

    def __init__(self, sampler: ExcerptSampler, batch: int, depth: int = 4) -> None:
        self._q: queue.Queue = queue.Queue(depth)
        self._sampler, self._batch = sampler, batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._sampler.sample(self._batch)
            while not self._stop.is_set():
                try:
                    self._q.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        return self._q.get()

    def close(self) -> None:
        self._stop.set()


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(ep, [h["val_loss"] for h in history], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("rtsep training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) training into ``args.out``; returns the best model's path."""
    import keras
    import tensorflow as tf

    from rtsep.convert.keras_to_tflite import is_stateful, stateful_module

    from .unet import build, frames_multiple

    if args.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        except RuntimeError:  # TensorFlow already started in this process: keep its setting
            print("note: --threads ignored (TensorFlow already initialised in this process)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    if state_path.exists() and not args.resume:
        raise ConfigError(f"{out} holds a training run already: add --resume to continue it, "
                          "or choose another --out")
    # Several --data folders: training draws from all their training songs; validation (and
    # model selection) stays on the first folder's, so adding data never moves the yardstick.
    data = data_specs(args)
    excluded = stem_exclusions(args)
    try:
        train_tracks, val_tracks = [], []
        for i, spec in enumerate(data):
            root, train_subset, val_subset = parse_data(spec)
            keep_out = excluded.get(spec, frozenset())
            train_tracks += [dataclasses.replace(
                t, exclude_stems=tuple(sorted(keep_out.union(t.exclude_stems))))
                for t in load_tracks(root, train_subset)]
            if i == 0:
                val_tracks = load_tracks(root, val_subset)
    except DataLayoutError as e:
        raise ConfigError(str(e)) from None
    stems = tuple(args.stems.split(",")) if args.stems else common_stems(train_tracks)
    recipe = RECIPES[args.variant]
    loss = args.loss or recipe.get("loss", "mae")
    config = {**recipe["config"], "stems": len(stems)}
    if args.filters:
        config["filters"] = [int(f) for f in args.filters.split(",")]
    if args.config:
        config.update(json.loads(args.config))
    context = args.context_frames or recipe.get("context_frames", 64)
    hop = args.hop or recipe.get("hop", 32)
    if "hop" in recipe and hop != recipe["hop"]:
        raise ConfigError(f"the {args.variant} variant runs at hop {recipe['hop']}, not {hop}")
    out_frames = args.out_frames or recipe.get("out_frames", 8)
    stateful = is_stateful(recipe)  # a causal stream model: lookahead built in
    multiple = frames_multiple(recipe["variant"], config)
    if context % multiple:
        raise ConfigError(f"--context-frames must be a multiple of {multiple}")
    if stateful:  # every tap must see data in training, or its weights stay at their init
        reach = stateful_module(recipe["variant"]).receptive_field(config)
        if reach > context:
            raise ConfigError(f"the receptive field ({reach} frames) is longer than a training "
                              f"excerpt (--context-frames {context}): its oldest taps would "
                              "never see data; use longer excerpts or fewer dilations")
    if (stateful or recipe["variant"] == "spec") and out_frames % multiple:
        raise ConfigError(f"--out-frames must be a multiple of {multiple}: this "
                          f"{recipe['variant']} model runs whole coarse frames (or STFT hops) "
                          "per invoke")
    length = window_samples(context, hop)
    lookahead = args.lookahead_frames
    if stateful:  # its lookahead is part of the model: config "lookahead"
        built_in = int(config.get("lookahead", 0))
        if lookahead not in (None, built_in):
            raise ConfigError(f"the {recipe['variant']} variant's lookahead is part of the "
                              f"model (here {built_in} frames); --lookahead-frames "
                              f"{lookahead} does not match it")
        lookahead = built_in
    elif recipe["variant"] == "spec":  # its runtime window must hold the STFT and lookahead
        from . import spec

        need = spec.min_lookahead_frames(config)
        if lookahead is not None and lookahead < need:
            raise ConfigError(f"the spec variant needs --lookahead-frames >= {need} (its STFT "
                              f"frames and their lookahead), not {lookahead}")
        lookahead = need if lookahead is None else lookahead
    elif lookahead is None:
        lookahead = 8

    keras.utils.set_random_seed(args.seed)
    model = build(recipe["variant"], **config)
    source = None
    if args.init and not (args.resume and state_path.exists()):
        source = _warm_start(model, Path(args.init), recipe["variant"], config)
    optimizer = keras.optimizers.Adam(args.lr, global_clipnorm=recipe.get("clipnorm"))
    delay = int(config.get("lookahead", 0))
    if args.loss_frames and stateful:
        raise ConfigError("--loss-frames is for window models (a stateful model is trained "
                          "on every step of its excerpt already)")
    span = loss_span(hop, context, delay, args.loss_frames or 0, lookahead)
    loss_fn = ola_loss_fn(hop, context, loss, delay=delay, span=span)

    # Exponential moving average of the weights (BatchNorm statistics included): validation,
    # model.keras and last.keras use it; single checkpoints of this small-batch training swing
    # between stems from one epoch to the next.
    ema = [tf.Variable(v, trainable=False) for v in model.weights] if args.ema else []
    decay = float(args.ema)
    # The average forgets its starting weights on a warm-up schedule, decay min(DECAY,
    # (1 + n) / (10 + n)) after n updates (as TensorFlow's ExponentialMovingAverage with
    # num_updates): random weights, or --init weights of a changed configuration, are not
    # carried in the average for thousands of steps. Weights of the same configuration are a
    # good average already: fine-tuning averages from them at the full decay.
    fine_tune = source is not None and "config_changed" not in source
    ema_updates = tf.Variable(1e9 if fine_tune else 0.0, trainable=False)

    @tf.function(reduce_retracing=True)
    def train_step(mix: Any, target: Any) -> Any:
        with tf.GradientTape() as tape:
            est = model(frames_of(mix, hop), training=True)
            loss = loss_fn(target, est)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        d = tf.minimum(decay, (1.0 + ema_updates) / (10.0 + ema_updates))
        for e, v in zip(ema, model.weights):
            e.assign(d * e + (1.0 - d) * v)
        ema_updates.assign_add(1.0)
        return loss

    @contextlib.contextmanager
    def averaged() -> Any:
        """Swap the EMA weights in for evaluation and saving, then swap back."""
        if not ema:
            yield
            return
        backup = [v.numpy() for v in model.weights]
        for v, e in zip(model.weights, ema):
            v.assign(e)
        try:
            yield
        finally:
            for v, b in zip(model.weights, backup):
                v.assign(b)

    @tf.function(reduce_retracing=True)
    def eval_step(mix: Any, target: Any) -> Any:
        return loss_fn(target, model(frames_of(mix, hop), training=False))

    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, ema=ema,
                               ema_updates=ema_updates)
    manager = tf.train.CheckpointManager(ckpt, str(out / "ckpt"), max_to_keep=2)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val": None, "seconds": 0.0,
                             "steps": 0, "lr_schedule": [[0, args.lr]], "ema": args.ema,
                             **({"init": source} if source else {})}
    if args.resume and state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("ema"):  # checkpoints from before the warm-up have no count: long past it
            ema_updates.assign(float(state["steps"]))
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        if ema and not state.get("ema"):  # the run had no average yet: start it here
            for e, v in zip(ema, model.weights):
                e.assign(v)
        optimizer.learning_rate.assign(args.lr)  # --lr on resume: a lower rate to fine-tune
        schedule = state.setdefault("lr_schedule", [])
        if not schedule or schedule[-1][1] != args.lr:
            schedule.append([state["epoch"], args.lr])
        print(f"resumed {out} at epoch {state['epoch']} ({state['steps']} steps, "
              f"{state['seconds'] / 3600:.2f} h)")

    # Quoted, so it pastes into a shell; the arguments main() was given, not the process's.
    command = "rtsep " + shlex.join(getattr(args, "argv", sys.argv[1:]))
    state.setdefault("commands", []).append([state["epoch"], command])  # every start/resume
    val_sampler = ExcerptSampler(val_tracks, stems, length, seed=1234, gain_range=(1.0, 1.0),
                                 remix_probability=0.0)
    val_mix, val_stems = val_sampler.sample(args.val_windows)
    val_sampler.close()
    sampler = ExcerptSampler(train_tracks, stems, length, seed=args.seed + state["epoch"],
                             gain_db=args.gain_db)
    fetch = Prefetcher(sampler, args.batch)
    card_base = {
        "variant": recipe["variant"], "config": config, "stems": list(stems),
        "sample_rate": 44100, "hop": hop,
        "runtime": {"context_frames": runtime_context(recipe["variant"], config, context,
                                                      out_frames, lookahead),
                    "out_frames": out_frames, "lookahead_frames": lookahead},
        "training": {
            "data": " + ".join(data), "train_songs": len(train_tracks),
            "valid_songs": [t.name for t in val_tracks],
            **({"exclude_stems": {k: sorted(v) for k, v in excluded.items()}}
               if excluded else {}),
            "recipe": {
                "loss": {"mae": "MAE of overlap-added stems",
                         "mae-stem": "MAE of overlap-added stems, each stem divided by its "
                                     "mean absolute level in the batch",
                         "sdr": "minus SDR per example and stem of overlap-added stems",
                         "sdr-batch": "minus SDR per stem of overlap-added stems over each "
                                      "batch"}[loss],
                "optimizer": "Adam", "lr_schedule": state.get("lr_schedule", [[0, args.lr]]),
                "batch": args.batch, "window_samples": length,
                **({"loss_frames": f"the last {args.loss_frames} frames before a lookahead of "
                                   f"{lookahead} (samples {span[0]}-{span[1]} of the window)"}
                   if args.loss_frames else {}),
                "augmentation": "stems remixed across songs (p=0.5), gains "
                                + (f"+-{args.gain_db:g} dB (log-uniform)" if args.gain_db
                                   else "0.5-1.5") + ", random channel; MIDI-level "
                                "augmentation in the rendered data"},
            "command": command,
            **({"phases": state["commands"]} if len(state["commands"]) > 1 else {}),
            **({"init": state["init"]} if state.get("init") else {}),
        },
    }
    deadline = time.time() + args.hours * 3600 if args.hours else None
    try:
        while state["epoch"] < args.epochs:
            t0 = time.time()
            losses = []
            for _ in range(args.steps_per_epoch):
                mix, target = fetch.get()
                losses.append(float(train_step(mix, target)))
            with averaged():
                val = float(np.mean([float(eval_step(val_mix[i:i + 64],
                                                     val_stems[i:i + 64]))
                                     for i in range(0, len(val_mix), 64)]))
            state["epoch"] += 1
            state["steps"] += args.steps_per_epoch
            state["seconds"] += time.time() - t0
            entry = {"epoch": state["epoch"], "train_loss": float(np.mean(losses)),
                     "val_loss": val, "seconds": round(state["seconds"], 1)}
            state["history"].append(entry)
            state["ema"] = args.ema
            manager.save(checkpoint_number=state["epoch"])
            card = dict(card_base)
            card["training"] = {**card_base["training"], "epochs": state["epoch"],
                                "steps": state["steps"],
                                "cpu_hours": round(state["seconds"] / 3600, 2),
                                "val_loss": val, "weights_ema": args.ema or None}
            with averaged():
                save_model(model, out / "last.keras", card)
                if state["best_val"] is None or val < state["best_val"]:
                    state["best_val"] = val
                    save_model(model, out / "model.keras", card)
            tmp = state_path.with_name("state.part.json")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(state_path)
            plot_history(state["history"], out / "loss.png")
            print(f"epoch {state['epoch']}: train {entry['train_loss']:.5f} "
                  f"val {val:.5f} ({time.time() - t0:.0f} s)", flush=True)
            if deadline and time.time() > deadline:
                print("time budget reached; resume with --resume")
                break
    finally:
        fetch.close()
    return out / "model.keras"


def runtime_context(variant: str, config: dict[str, Any], context: int, out_frames: int,
                    lookahead: int) -> int:
    """The window the converter defaults to: the training excerpt, but for ``spec``, trained
    on whole excerpts, the shortest window that holds its receptive field."""
    if variant != "spec":
        return context
    from . import spec

    return spec.window_frames(config, out_frames, lookahead)


def grown_weights(target: list[np.ndarray], source: list[np.ndarray]) -> list[np.ndarray]:
    """``source`` weights for a model whose weights have ``target``'s shapes: equal shapes are
    copied; a kernel grown by a leading axis of taps (a per-frame Dense encoder [64, B] become
    a causal Conv1D [A, 64, B] over A frames: ``analysis_frames``), or by more taps (A to A'),
    gets the source at its last taps, ending at the current frame, and zeros at the earlier
    ones, so the grown model starts out computing exactly what the source did. Anything else
    raises ValueError."""
    if len(target) != len(source):
        raise ValueError(f"{len(source)} weights for {len(target)}")
    out = []
    for t, s in zip(target, source):
        taps = s if s.ndim == t.ndim else s[None]  # a Dense kernel is a one-tap convolution
        grows = t.ndim == 3 and taps.shape[1:] == t.shape[1:] and taps.shape[0] < t.shape[0]
        if taps.shape != t.shape and not grows:  # only convolution kernels grow, by taps
            raise ValueError(f"weight of shape {s.shape} for {t.shape}")
        grown = np.zeros(t.shape, s.dtype)
        grown[t.shape[0] - taps.shape[0]:] = taps
        out.append(grown)
    return out


def _warm_start(model: Any, init: Path, variant: str, config: dict[str, Any]
                ) -> dict[str, Any]:
    """Start from a trained model's weights (fine-tuning, e.g. with another loss): the same
    variant, and every weight of the same shape. Returns what the card keeps of the source
    (path, epochs, cost, and its own source), so a card can state the whole training cost."""
    from .card import load_model

    try:
        source, card = load_model(init)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--init {init}: cannot load ({e})") from None
    mismatch = (f"--init {init}: variant {card.get('variant')} {card.get('config')} does not "
                f"match {variant} {config}")
    if card.get("variant") != variant:
        raise ConfigError(mismatch)
    try:  # a config change that keeps every weight's shape (e.g. compress) may start from it
        added = warm_start_weights(model, source)
    except ValueError:
        raise ConfigError(mismatch) from None
    t = card.get("training", {})
    changed = {k: v for k, v in config.items() if card.get("config", {}).get(k) != v}
    print(f"weights from {init} (epoch {t.get('epochs')})"
          + (f"; config changed: {changed}" if changed else "")
          + (f"; new layers: {', '.join(added)}" if added else ""))
    return {"model": str(init), "epochs": t.get("epochs"), "cpu_hours": t.get("cpu_hours"),
            "command": t.get("command"), **({"init": t["init"]} if t.get("init") else {}),
            **({"config_changed": changed} if changed else {}),
            **({"new_layers": added} if added else {})}


def warm_start_weights(model: Any, source: Any) -> list[str]:
    """Set ``model``'s weights from ``source``'s (``grown_weights``): in order when both have
    as many weights, else layer by layer by name, where layers of ``model`` that ``source``
    lacks keep their initial weights (a variant whose added blocks start as the identity, as
    spec's ``refine_dilations``, then starts from the source's output). Returns the names of
    those new layers; a source layer with no namesake (weights that would be dropped) raises
    ValueError."""
    if len(model.weights) == len(source.weights):
        model.set_weights(grown_weights(model.get_weights(), source.get_weights()))
        return []
    theirs = {layer.name: layer for layer in source.layers if layer.weights}
    ours = [layer for layer in model.layers if layer.weights]
    dropped = sorted(set(theirs) - {layer.name for layer in ours})
    if dropped:
        raise ValueError(f"layers {dropped} of the source are not in the model")
    for layer in ours:
        if layer.name in theirs:
            layer.set_weights(grown_weights(layer.get_weights(),
                                            theirs[layer.name].get_weights()))
    return [layer.name for layer in ours if layer.name not in theirs]


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, action="append",
                   help="rendered data folder, or musdb:PATH; repeatable: training uses every "
                        "folder's training songs, validation the first folder's")
    p.add_argument("--exclude-stem", action="append", default=[], metavar="DIR=STEM",
                   help="keep STEM of every training song of the --data folder DIR out of "
                        "training (as a manifest's exclude_stems; the other stems still "
                        "train), e.g. generated songs whose drums are unlike the rest; "
                        "repeatable")
    p.add_argument("--variant", choices=sorted(RECIPES), default="seed")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--steps-per-epoch", type=int, default=500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=LOSSES, default=None,
                   help="mae (the seed recipe, the default but for fbd); mae-stem, sdr or "
                   "sdr-batch (every stem weighs the same; sdr-batch is the evaluation's SDR "
                   "over each batch, fbd's default)")
    p.add_argument("--loss-frames", type=int, default=None, metavar="K",
                   help="window models: score only the K frames the engine emits per invoke "
                        "(the last K before the lookahead), not the whole window: train for "
                        "the causal edge the model is run at (default: whole window)")
    p.add_argument("--gain-db", type=float, default=None, metavar="D",
                   help="per-stem training gains log-uniform within +-D dB (default: linear "
                        "0.5-1.5): a model that does not learn the training songs' level "
                        "balance (how loud drums are against bass) as a prior")
    p.add_argument("--hop", type=int, default=None, help="frame hop (default 32; spec: 64)")
    p.add_argument("--context-frames", type=int, default=None,
                   help="frames per training example (default 64; the stateful tcn and "
                        "cunet: 2048, longer than their receptive fields)")
    p.add_argument("--out-frames", type=int, default=None,
                   help="runtime default for conversion (default 8; spec: 64)")
    p.add_argument("--lookahead-frames", type=int, default=None,
                   help="runtime default for conversion (default 8; tcn: 0, it is causal)")
    p.add_argument("--stems", default=None, help="comma-separated (default: all in the data)")
    p.add_argument("--filters", default=None, help="comma-separated encoder widths")
    p.add_argument("--config", default=None, help="extra constructor arguments as JSON")
    p.add_argument("--val-windows", type=int, default=512)
    p.add_argument("--hours", type=float, default=None, help="stop after this much time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default all)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", default=None, metavar="MODEL.keras",
                   help="start from this trained model's weights (same variant and config)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999) and "
                        "validate/save it (default: off)")
    p.add_argument("--eval-seconds", type=float, default=None,
                   help="at the end, score the best model on the first S seconds of every "
                        "validation song (default: whole songs; 0: skip)")


def final_eval(run: Path, data: str, max_seconds: float | None) -> Path:
    """Convert the best model and score it on the validation songs through the streaming
    engine (the samples ``rtsep file`` would write); writes ``eval.json`` and ``eval.png``."""
    from rtsep.convert.keras_to_tflite import convert
    from rtsep.evaluate import evaluate, format_table, write_json, write_plot

    from .card import load_model

    model, card = load_model(run / "model.keras")
    tflite = convert(model, card, run / "model.tflite", name=run.name)
    ev = evaluate(tflite, data, max_seconds=max_seconds, threads=2, progress=False)
    ev.command = (f"rtsep eval -m {tflite} --data {data}"
                  + (f" --max-seconds {max_seconds:g}" if max_seconds else ""))
    print(format_table(ev))
    write_plot(ev, run / "eval.png")
    return write_json(ev, run / "eval.json")


def run_train(args: argparse.Namespace) -> int:
    path = train(args)
    print(f"best model: {path}")
    if args.eval_seconds != 0:
        final_eval(path.parent, data_specs(args)[0], args.eval_seconds)
    return 0
