"""``rtsep eval``: a model's SDR on held-out songs beside the references that make it honest.

Every song runs through the streaming engine exactly as ``rtsep file`` runs it (blocks of
``filemode.BLOCK`` frames, ``flush()``, the first latency_samples dropped, all channels), so
the samples scored are the samples a user gets. On the same songs, three references
(DESIGN.md section 7): the mixture used as the estimate, the best constant gain of the mixture
(the FLOOR: SDR over the raw mixture flatters any model, since scaling alone gains several dB),
and an oracle ideal ratio mask. Per song and stem the MDX SDR (:func:`rtsep.metrics.sdr`); a
silent reference or a stem the data set excludes is left out for that song; means are over
songs per stem, and the "mean" row is the mean over stems.

Data: a folder in the rendered layout (``rtsep data render``; subset ``valid`` by default) or
``musdb:PATH`` for MUSDB18-HQ (subset ``test`` by default). Only the stems the model and the
data share are scored; the others are named as skipped.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from . import metrics
from .engine import load
from .errors import AudioInputError, AudioOutputError, ConfigError, MissingExtraError
from .filemode import BLOCK

#: A reference stem whose RMS over the (truncated) song is below this (-60 dBFS) is silent.
SILENCE_RMS = 1e-3
METHODS = ("model", "mixture", "best_gain", "oracle_irm")
METHOD_LABELS = {"model": "model", "over_floor": "over floor", "mixture": "mixture",
                 "best_gain": "best gain", "oracle_irm": "oracle IRM", "bss_model": "BSS v4"}
EXCERPT_SECONDS = 4.0
MUSDB_PREFIX = "musdb:"


@dataclass
class DataSpec:
    """Where the songs come from: ``kind`` is "rendered" or "musdb"."""

    root: Path
    kind: str
    subset: str


def parse_data(data: str, subset: str | None = None) -> DataSpec:
    """``DIR`` (rendered layout, default subset valid) or ``musdb:PATH`` (default test)."""
    if data.startswith(MUSDB_PREFIX):
        path = data[len(MUSDB_PREFIX):]
        if not path:
            raise ConfigError("--data musdb: needs a path, e.g. musdb:/data/musdb18hq")
        return DataSpec(Path(path), "musdb", subset or "test")
    return DataSpec(Path(data), "rendered", subset or "valid")


@dataclass
class Excerpt:
    """A few seconds of one song and stem, kept for the spectrogram figure (mono)."""

    song: str
    stem: str
    start: float  # seconds into the song
    sample_rate: int
    mixture: np.ndarray
    estimate: np.ndarray
    reference: np.ndarray


@dataclass
class Evaluation:
    """Everything ``rtsep eval`` computed; :meth:`to_json` is what ``--json`` writes."""

    model: dict[str, Any]
    data: dict[str, Any]
    stems: tuple[str, ...]
    skipped: dict[str, list[str]]
    songs: dict[str, dict[str, Any]]
    means: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    command: str = ""
    excerpt: Excerpt | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        means = self.means
        n_fft = self.settings.get("oracle_fft", metrics.N_FFT)
        return {
            "command": self.command,
            "model": self.model,
            "data": self.data,
            "stems": list(self.stems),
            "skipped_stems": self.skipped,
            "settings": self.settings,
            "methods": {"model": "the streaming engine's output, as rtsep file writes it",
                        "mixture": "the mixture used as the estimate",
                        "best_gain": "g * mixture, g = <s, mix>/<mix, mix> per song and stem "
                                     "(the floor)",
                        "oracle_irm": f"ideal ratio mask, STFT {n_fft}, hop {n_fft // 4}, "
                                      "non-causal",
                        "over_floor": "model minus best_gain",
                        **({"bss_model": "BSSEval v4 SDR of the model (museval, median over "
                                         "1 s windows)"} if self.settings.get("bss") else {})},
            "means": means,
            "sdr_db": {s: means[s]["model"] for s in (*self.stems, "mean")},
            "sdr_over_floor_db": {s: means[s]["over_floor"] for s in (*self.stems, "mean")},
            "songs": self.songs,
            "excerpt": ({"song": self.excerpt.song, "stem": self.excerpt.stem,
                         "start_seconds": self.excerpt.start,
                         "seconds": len(self.excerpt.mixture) / self.excerpt.sample_rate}
                        if self.excerpt else None),
        }


def _load_tracks(spec: DataSpec, songs: Sequence[str] | None) -> list[Any]:
    from rtsep.models.data.musdb import DataLayoutError, load_tracks

    try:
        tracks = load_tracks(spec.root, spec.subset)
    except DataLayoutError as e:
        raise AudioInputError(str(e)) from None
    if songs:
        names = {t.name: t for t in tracks}
        unknown = [s for s in songs if s not in names]
        if unknown:
            raise ConfigError(f"unknown song(s) {', '.join(unknown)} in {spec.subset}: have "
                              f"{', '.join(names)}")
        tracks = [names[s] for s in songs]
    return tracks


def _frames(track: Any) -> int:
    try:
        return sf.info(str(track.mixture)).frames
    except (OSError, RuntimeError, TypeError) as e:
        raise AudioInputError(f"cannot read the mixture of {track.name} in {track.folder}: "
                              f"{e}") from None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _pick_excerpt(song: str, stem: str, rate: int, mix: np.ndarray, est: np.ndarray,
                  ref: np.ndarray) -> Excerpt:
    """The EXCERPT_SECONDS of the song where the reference stem is loudest."""
    n = len(ref)
    length = min(n, int(EXCERPT_SECONDS * rate))
    mono = ref.mean(axis=1, dtype=np.float64)
    energy = np.concatenate([[0.0], np.cumsum(mono * mono)])
    step = max(1, rate // 2)
    starts = np.arange(0, n - length + 1, step)
    start = int(starts[np.argmax(energy[starts + length] - energy[starts])])
    cut = slice(start, start + length)
    return Excerpt(song, stem, start / rate, rate, mix[cut].mean(axis=1), est[cut].mean(axis=1),
                   ref[cut].mean(axis=1))


def evaluate(model: str | Path | None, data: str | DataSpec, subset: str | None = None,
             songs: Sequence[str] | None = None, max_seconds: float | None = None,
             bss: bool = False, threads: int = 2, progress: bool = True,
             log: Callable[[str], None] | None = None,
             oracle_fft: int = metrics.N_FFT) -> Evaluation:
    """Score ``model`` and the three references on every song; see the module docstring.

    ``oracle_fft``: the oracle mask's STFT size (hop a quarter of it). The default 2048 is the
    usual offline ceiling; the model's own resolution (64 for 64-sample frames) tells how much of
    the gap a mask at that resolution could close at best."""
    from rtsep.models.data.excerpts import load_song
    from rtsep.models.data.musdb import MUSDB_STEMS, DataLayoutError

    say = log or (lambda s: print(s, file=sys.stderr))
    spec = data if isinstance(data, DataSpec) else parse_data(data, subset)
    if max_seconds is not None and max_seconds <= 0:
        raise ConfigError(f"--max-seconds must be > 0, got {max_seconds}")
    if oracle_fft < 4 or oracle_fft % 4:
        raise ConfigError(f"--oracle-fft must be a multiple of 4, at least 4; got {oracle_fft}")
    if bss:
        metrics.require_museval()
    sep = load(model, threads=threads)
    tracks = _load_tracks(spec, songs)
    present = {s for t in tracks for s in t.stems}
    data_stems = [s for s in MUSDB_STEMS if s in present] + sorted(present - set(MUSDB_STEMS))
    stems = tuple(s for s in sep.stems if s in data_stems)
    skipped = {"model_only": [s for s in sep.stems if s not in data_stems],
               "data_only": [s for s in data_stems if s not in sep.stems]}
    if not stems:
        raise ConfigError(f"model {sep.card.name} has stems {', '.join(sep.stems)} and the "
                          f"data has {', '.join(data_stems)}: nothing in common to evaluate")
    if skipped["model_only"]:
        say(f"skipping model stem(s) not in the data: {', '.join(skipped['model_only'])}")
    if skipped["data_only"]:
        say(f"skipping data stem(s) the model does not separate: "
            f"{', '.join(skipped['data_only'])} (still used for the oracle mask)")

    rate = sep.sample_rate
    limit = int(max_seconds * rate) if max_seconds else None
    lengths = [min(_frames(t), limit) if limit else _frames(t) for t in tracks]
    # Counted in frames (exact integers; seconds summed as floats overshot the total and tqdm
    # warned "clamping frac" at the end), shown in seconds.
    bar = tqdm(total=sum(lengths), unit="s", unit_scale=1 / rate, disable=not progress,
               file=sys.stderr, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s "
                          "[{elapsed}<{remaining}]")
    results: dict[str, dict[str, Any]] = {}
    excerpt: Excerpt | None = None
    try:
        for track in tracks:
            bar.set_description_str(track.name)
            try:
                mix, refs = load_song(track, track.stems, sample_rate=rate)
            except DataLayoutError as e:
                raise AudioInputError(str(e)) from None
            if limit:
                mix, refs = mix[:limit], refs[:, :limit]
            if not np.isfinite(mix).all() or not np.isfinite(refs).all():
                raise AudioInputError(f"{track.name}: NaN or Inf samples in {track.folder}")
            start = time.perf_counter()
            est = sep.separate(mix, BLOCK, bar.update)
            wall = time.perf_counter() - start
            irm = metrics.oracle_irm(refs, mix, oracle_fft, oracle_fft // 4)
            song: dict[str, Any] = {"seconds": round(len(mix) / rate, 3),
                                    "channels": int(mix.shape[1]),
                                    "speed_x_real_time": round(len(mix) / rate / wall, 2),
                                    "stems": {}}
            kept: list[tuple[str, np.ndarray, np.ndarray]] = []
            for stem in stems:
                if stem not in track.stems:
                    song["stems"][stem] = {"skipped": "no such stem in this song"}
                    continue
                if stem in track.exclude_stems:
                    song["stems"][stem] = {"skipped": "excluded by the data set's manifest"}
                    continue
                ref = refs[track.stems.index(stem)]
                rms = _rms(ref)
                if rms < SILENCE_RMS:
                    song["stems"][stem] = {"skipped": f"silent reference (RMS {rms:.1e})"}
                    continue
                y = est[sep.stems.index(stem)]
                g = metrics.best_gain(ref, mix)
                row = {"model": metrics.sdr(ref, y),
                       "mixture": metrics.sdr(ref, mix),
                       "best_gain": metrics.sdr(ref, metrics.best_gain_estimate(ref, mix)),
                       "oracle_irm": metrics.sdr(ref, irm[track.stems.index(stem)]),
                       "gain": g}
                row["over_floor"] = row["model"] - row["best_gain"]
                song["stems"][stem] = row
                kept.append((stem, ref, y))
                if excerpt is None:
                    excerpt = _pick_excerpt(track.name, stem, rate, mix, y, ref)
            if bss and kept:
                values = metrics.bss_sdr(np.stack([k[1] for k in kept]),
                                         np.stack([k[2] for k in kept]), rate)
                for (stem, _, _), v in zip(kept, values):
                    song["stems"][stem]["bss_model"] = float(v) if np.isfinite(v) else None
            results[track.name] = song
    finally:
        bar.close()

    columns = ("model", "over_floor", "mixture", "best_gain", "oracle_irm",
               *(("bss_model",) if bss else ()))
    means: dict[str, dict[str, Any]] = {}
    for stem in stems:
        rows = [s["stems"][stem] for s in results.values() if "model" in s["stems"][stem]]
        means[stem] = {c: _mean([r[c] for r in rows if r.get(c) is not None]) for c in columns}
        means[stem]["songs"] = len(rows)
    scored = [s for s in stems if means[s]["songs"]]
    means["mean"] = {c: _mean([means[s][c] for s in scored if means[s][c] is not None])
                     for c in columns}
    means["mean"]["stems"] = len(scored)
    for stem in stems:
        if not means[stem]["songs"]:
            say(f"no song has a usable {stem} reference: {stem} is not scored")

    card = sep.card
    return Evaluation(
        model={"name": card.name, "sha256": card.sha256, "path": str(card.path),
               "variant": card.variant, "stems": list(sep.stems),
               "latency_samples": sep.latency_samples, "sample_rate": rate},
        data={"root": str(spec.root), "kind": spec.kind, "subset": spec.subset,
              "stems": list(data_stems), "songs": [t.name for t in tracks]},
        stems=stems, skipped=skipped, songs=results, means=means,
        settings={"silence_rms": SILENCE_RMS, "max_seconds": max_seconds, "bss": bss,
                  "sdr": "MDX: 10*log10((sum s^2 + eps)/(sum (s - s_hat)^2 + eps)) over all "
                         f"samples and channels, eps {metrics.EPS}",
                  "block": BLOCK, "threads": threads, "oracle_fft": oracle_fft},
        excerpt=excerpt)


def format_table(ev: Evaluation) -> str:
    """The per-stem table (rows: stems and their mean; columns: methods), in dB."""
    columns = ["model", "over_floor", "mixture", "best_gain", "oracle_irm"]
    if ev.settings.get("bss"):
        columns.append("bss_model")
    n = len(ev.songs)
    head = (f"SDR (dB, MDX form), mean over songs: model {ev.model['name']} on {ev.data['kind']} "
            f"{ev.data['subset']} ({n} song{'s' if n != 1 else ''}"
            + (f", first {ev.settings['max_seconds']:g} s" if ev.settings.get("max_seconds")
               else "") + ")")
    width = max(6, *(len(s) for s in ev.stems))
    lines = [head, f"{'stem':<{width}}  {'songs':>5}" + "".join(
        f"  {METHOD_LABELS[c]:>10}" for c in columns)]
    for name in (*ev.stems, "mean"):
        m = ev.means[name]
        count = "" if name == "mean" else str(m["songs"])
        cells = []
        for c in columns:
            v = m.get(c)
            cells.append(f"  {'-':>10}" if v is None else
                         f"  {v:>+10.2f}" if c == "over_floor" else f"  {v:>10.2f}")
        lines.append(f"{name:<{width}}  {count:>5}" + "".join(cells))
    lines.append("floor = best constant gain of the mixture; over floor = model - best gain")
    if any(ev.skipped.values()):
        parts = []
        if ev.skipped["model_only"]:
            parts.append(f"model stems not in the data: {', '.join(ev.skipped['model_only'])}")
        if ev.skipped["data_only"]:
            parts.append(f"data stems not in the model: {', '.join(ev.skipped['data_only'])}")
        lines.append("skipped " + "; ".join(parts))
    left_out = [f"{song}/{stem} ({r['skipped']})" for song, s in ev.songs.items()
                for stem, r in s["stems"].items() if "skipped" in r]
    if left_out:
        lines.append("left out: " + ", ".join(left_out))
    return "\n".join(lines)


def _spectrogram_db(x: np.ndarray, n_fft: int = 2048, hop: int = 256) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    win = np.hanning(n_fft)
    count = 1 + (len(x) - n_fft) // hop
    idx = np.arange(count)[:, None] * hop + np.arange(n_fft)[None, :]
    mag = np.abs(np.fft.rfft(x[idx] * win, axis=-1)).T
    return 20.0 * np.log10(mag + 1e-6)


def write_plot(ev: Evaluation, path: str | Path) -> Path:
    """PNG: per-stem grouped bars of the four methods, and mixture / estimate / reference
    spectrograms of one excerpt. matplotlib is imported here only (Agg, no pyplot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("--plot needs matplotlib: pip install matplotlib") from None
    path = Path(path)
    fig = Figure(figsize=(13, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, height_ratios=(1, 1.1))
    ax = fig.add_subplot(grid[0, :])
    names = [*ev.stems, "mean"]
    methods = ("mixture", "best_gain", "model", "oracle_irm")
    colors = {"mixture": "#9e9e9e", "best_gain": "#616161", "model": "#1f77b4",
              "oracle_irm": "#ff7f0e"}
    width = 0.8 / len(methods)
    x = np.arange(len(names))
    for i, meth in enumerate(methods):
        vals = [ev.means[n].get(meth) for n in names]
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width,
                      [np.nan if v is None else v for v in vals], width,
                      label=METHOD_LABELS[meth] + (" (floor)" if meth == "best_gain" else ""),
                      color=colors[meth])
        ax.bar_label(bars, labels=["" if v is None else f"{v:.1f}" for v in vals], fontsize=7)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, names)
    ax.set_ylabel("SDR (dB)")
    floor = ev.means["mean"].get("over_floor")
    ax.set_title(f"{ev.model['name']} on {ev.data['kind']} {ev.data['subset']} "
                 f"({len(ev.songs)} songs): mean SDR over the floor "
                 + ("n/a" if floor is None else f"{floor:+.2f} dB"))
    ax.legend(loc="best", fontsize=8)
    ex = ev.excerpt
    if ex is not None:
        specs = [("mixture", ex.mixture), (f"estimate ({ex.stem})", ex.estimate),
                 (f"reference ({ex.stem})", ex.reference)]
        dbs = [_spectrogram_db(s) for _, s in specs]
        top = max(float(d.max()) for d in dbs)
        freqs = np.fft.rfftfreq(2048, 1.0 / ex.sample_rate)
        times = ex.start + np.arange(dbs[0].shape[1]) * 256 / ex.sample_rate
        for i, ((title, _), db) in enumerate(zip(specs, dbs)):
            sax = fig.add_subplot(grid[1, i])
            mesh = sax.pcolormesh(times, freqs[1:], db[1:], shading="auto", cmap="magma",
                                  vmin=top - 80, vmax=top, rasterized=True)
            sax.set_yscale("log")
            sax.set_ylim(30, ex.sample_rate / 2)
            sax.set_title(f"{title}: {ex.song}", fontsize=9)
            sax.set_xlabel("time (s)")
            if i == 0:
                sax.set_ylabel("frequency (Hz)")
        fig.colorbar(mesh, ax=sax, label="dB")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        fig.savefig(tmp, format="png", dpi=100)
        tmp.replace(path)
    except OSError as e:
        raise AudioOutputError(f"cannot write the plot {path}: {e.strerror or e}") from None
    return path


def write_json(ev: Evaluation, path: str | Path) -> Path:
    """The full result as JSON (temp file, then rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(ev.to_json(), indent=2) + "\n")
        tmp.replace(path)
    except OSError as e:
        raise AudioOutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def command_line(args: Any) -> str:
    """The ``rtsep eval`` command that reproduces ``args`` (recorded in the JSON)."""
    parts = ["rtsep", "eval"] + (["--model", str(args.model)] if args.model else [])
    parts += ["--data", str(args.data)]
    if args.subset:
        parts += ["--subset", args.subset]
    if args.songs:
        parts += ["--songs", args.songs]
    if args.max_seconds:
        parts += ["--max-seconds", f"{args.max_seconds:g}"]
    if args.bss:
        parts.append("--bss")
    if args.json:
        parts += ["--json", str(args.json)]
    if args.plot:
        parts += ["--plot", str(args.plot)]
    return shlex.join(parts)


def run_eval(args: Any) -> int:
    """The ``rtsep eval`` command: evaluate, print the table, write JSON and PNG."""
    songs = [s.strip() for s in args.songs.split(",") if s.strip()] if args.songs else None
    ev = evaluate(args.model, args.data, args.subset, songs, args.max_seconds, args.bss,
                  args.threads, progress=not args.quiet, oracle_fft=args.oracle_fft)
    ev.command = command_line(args)
    print(format_table(ev))
    if args.json:
        print(f"wrote {write_json(ev, args.json)}")
    if args.plot:
        print(f"wrote {write_plot(ev, args.plot)}")
    return 0
