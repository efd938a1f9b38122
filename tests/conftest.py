"""Real TFLite models built and converted by the tests (no mocks of the model)."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def make_model(tmp: Path, name: str, **kwargs) -> Path:
    """Build a small model, convert it and write its card; returns the .tflite path."""
    return build_and_convert(tmp, name, **kwargs)[0]


#: A small causal TCN (receptive field 1 + 2*(1+2+4) = 15 frames).
TINY_TCN = {"basis": 16, "bottleneck": 8, "hidden": 8, "dilations": 3, "repeats": 1}
#: A small causal streaming U-Net: two halving levels (blocks of 4 frames), a 2-block TCN.
TINY_CUNET = {"basis": 16, "analysis_frames": 3, "filters": [4, 8], "kernel": 3,
              "dilations": 2, "tcn_kernel": 2, "hidden": 8}
#: A small STFT-mask model: n_fft 256 (one engine frame per STFT hop), receptive field 1
#: frame ahead and 1 + 2*(1+2) = 7 behind.
TINY_SPEC = {"n_fft": 256, "hidden": 8, "lookahead": 1, "dilations": [1, 2]}


def build_and_convert(tmp: Path, name: str, *, stems: tuple[str, ...] = ("a", "b"),
                      hop: int = 32, context: int = 8, out_frames: int = 2,
                      lookahead: int | None = None,
                      filters: tuple[int, ...] = (4, 8), identity: bool = False,
                      variant: str = "seed", seed: int = 0, **config) -> tuple[Path, object]:
    """Build a small model (a U-Net, or a ``tcn`` with ``TINY_TCN``'s size), convert it and
    write its card; returns the .tflite path and the Keras full-sequence model. ``lookahead``
    defaults to 2 frames for a U-Net, 0 for a tcn.

    ``identity``: the last layer's kernel is zero and its bias large, so every sigmoid mask is
    exactly 1.0 in float32 and the model returns its input frames."""
    import keras

    from rtsep.convert.keras_to_tflite import convert
    from rtsep.models.unet import build

    keras.utils.set_random_seed(seed)
    if variant == "tcn":  # its lookahead is part of the model
        lookahead = lookahead or 0
        cfg = {"stems": len(stems), **TINY_TCN, **config, "lookahead": lookahead}
    elif variant == "cunet":  # causal, no lookahead
        lookahead = 0
        cfg = {"stems": len(stems), **TINY_CUNET, **config}
    elif variant == "spec":  # hop 64; the window holds the STFT frames and their context
        from rtsep.models.spec import min_lookahead_frames, window_frames

        hop = 64
        cfg = {"stems": len(stems), **TINY_SPEC, **config}
        lookahead = min_lookahead_frames(cfg) if lookahead is None else lookahead
        context = window_frames(cfg, out_frames, lookahead)
    else:
        lookahead = 2 if lookahead is None else lookahead
        cfg = {"stems": len(stems), "filters": list(filters), **config}
    model = build(variant, **cfg)
    if identity:
        last = model.get_layer("mask")
        k, b = last.get_weights()
        last.set_weights([np.zeros_like(k), np.full_like(b, 40.0)])
    card = {"variant": variant, "config": cfg,
            "stems": list(stems), "sample_rate": 44100, "hop": hop,
            "description": f"test model {name}",
            "runtime": {"context_frames": context, "out_frames": out_frames,
                        "lookahead_frames": lookahead}}
    return convert(model, card, tmp / f"{name}.tflite"), model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> Path:
    """Two stems, hop 32, context 8, out_frames 2, lookahead 2 (latency 63+64+32 = 159)."""
    return make_model(model_dir, "tiny")


@pytest.fixture(scope="session")
def tiny_tcn(model_dir: Path) -> tuple[Path, object]:
    """A stateful model: two stems, 4 new frames per invoke (latency 63 + 3*32 = 159)."""
    return build_and_convert(model_dir, "tiny-tcn", variant="tcn", out_frames=4)


@pytest.fixture(scope="session")
def tiny_tcn_lookahead(model_dir: Path) -> tuple[Path, object]:
    """Stateful with lookahead: 2 contiguous analysis frames, output 2 frames behind the
    newest, 3 new frames per invoke (latency 63 + 2*32 + 2*32 = 191)."""
    return build_and_convert(model_dir, "tiny-tcn-la", variant="tcn", out_frames=3,
                             analysis_frames=2, lookahead=2)


@pytest.fixture(scope="session")
def tiny_cunet(model_dir: Path) -> tuple[Path, object]:
    """A stateful streaming U-Net: two stems, 4 new frames per invoke (latency 159)."""
    return build_and_convert(model_dir, "tiny-cunet", variant="cunet", out_frames=4)


@pytest.fixture(params=["window", "stateful", "stateful-lookahead", "stateful-cunet"])
def either_model(request: pytest.FixtureRequest, tiny_model: Path,
                 tiny_tcn: tuple[Path, object], tiny_tcn_lookahead: tuple[Path, object],
                 tiny_cunet: tuple[Path, object]) -> Path:
    """The engine's contract holds for every model kind."""
    return {"window": tiny_model, "stateful": tiny_tcn[0],
            "stateful-lookahead": tiny_tcn_lookahead[0],
            "stateful-cunet": tiny_cunet[0]}[request.param]


@pytest.fixture(scope="session")
def identity_model(model_dir: Path) -> Path:
    return make_model(model_dir, "identity", stems=("all",), identity=True, lookahead=1,
                      out_frames=3)


def music(seconds: float, channels: int = 2, rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A deterministic test signal with music's structure: a bass line, chords, clicks, noise.

    float32[frames, channels]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    bass = 0.3 * np.sin(2 * np.pi * 55 * (1 + (t * 2).astype(int) % 3 / 4) * t)
    chord = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    clicks = (np.sin(2 * np.pi * 2 * t) > 0.995) * rng.normal(0, 0.5, t.size)
    mono = bass + chord + clicks + 0.01 * rng.normal(size=t.size)
    out = np.stack([mono * (0.8 + 0.2 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def skip_unless_installed(ok: bool, reason: str) -> None:
    """Skip on a developer machine without a system package; fail in CI (CI=true), where
    .ci/run installs it, so a missing install step cannot pass as skipped tests."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


def allocations_of(run: Callable[[], None]) -> tuple[int, int, list[tuple[str, int, int, str]]]:
    """(retained, peak, where) of calling ``run`` under tracemalloc: ``retained`` counts only
    allocations made under rtsep's own code, since other threads of the test process (such as
    tqdm's monitor, which earlier tests start) allocate at times of their own (counting the
    whole process, these tests failed in CI with 216 and 316 bytes); ``peak`` is the whole
    process's transient peak; ``where`` names the first three retaining lines."""
    tracemalloc.start(32)
    try:
        before = tracemalloc.take_snapshot()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run()
        _, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    retained, where = rtsep_growth(after, before)
    return retained, peak - base, where


def block_allocations(sep: object, signal: np.ndarray, block: int, warmup: int
                      ) -> tuple[int, int, list[tuple[str, int, int, str]]]:
    """``allocations_of`` feeding ``signal`` to a prepared separator's ``process_into`` in
    blocks of ``block`` frames, after ``warmup`` blocks outside the trace."""
    out = np.zeros((len(sep.stems), block, signal.shape[1]), np.float32)
    blocks = [np.ascontiguousarray(signal[i:i + block])
              for i in range(0, len(signal) - block, block)]
    for b in blocks[:warmup]:
        sep.process_into(b, out)

    def run() -> None:
        for b in blocks[warmup:]:
            sep.process_into(b, out)

    return allocations_of(run)


def rtsep_growth(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot
                 ) -> tuple[int, list[tuple[str, int, int, str]]]:
    """Bytes retained between two snapshots of one trace session (``tracemalloc.start(32)``)
    by allocations made under rtsep's own code (see ``allocations_of``), and the first three
    retaining places: (file, line, bytes, the innermost rtsep frame)."""
    import rtsep

    package = str(Path(rtsep.__file__).parent)
    ours = [d for d in after.compare_to(before, "traceback")
            if any(f.filename.startswith(package) for f in d.traceback)]
    where = []
    for d in ours[:3]:
        inner = next(f for f in reversed(d.traceback) if f.filename.startswith(package))
        where.append((Path(d.traceback[-1].filename).name, d.traceback[-1].lineno, d.size_diff,
                      f"{Path(inner.filename).name}:{inner.lineno}"))
    return sum(d.size_diff for d in ours), where
