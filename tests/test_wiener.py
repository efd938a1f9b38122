"""The streaming Wiener post-filter (rtsep/wiener.py): it uses the stems' stereo images to undo
leakage, adds exactly n_fft samples of latency, keeps the stems summing to the input, is the
same in any block size, allocates nothing per block, and is loaded from an ensemble card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import block_allocations, build_and_convert, music

from rtsep import metrics
from rtsep.engine import Separator, Stream, load
from rtsep.errors import ModelError
from rtsep.wiener import WienerFilter


class GivenStems(Stream):
    """A separator whose estimates are given in advance (sample n of the stream gets
    ``stems[:, n]``): the filter under test sees estimates of a known quality."""

    def __init__(self, stems: np.ndarray, latency: int = 0) -> None:
        self._given = np.ascontiguousarray(stems, np.float32)
        self._latency = latency
        self.card = None

    @property
    def stems(self) -> tuple[str, ...]:
        return tuple(f"s{i}" for i in range(self._given.shape[0]))

    @property
    def sample_rate(self) -> int:
        return 44100

    @property
    def latency_terms(self) -> dict[str, int]:
        return {"given": self._latency}

    def prepare(self, sample_rate: int, max_block: int, channels: int) -> GivenStems:
        self._channels, self._max_block = channels, max_block
        self._flush_in = np.zeros((self._latency, channels), np.float32)
        self._prepared = True
        self.reset()
        return self

    def reset(self) -> None:
        self._at = 0

    def process_into(self, block: np.ndarray, out: np.ndarray) -> None:
        n = self._fits(block, out)
        for i in range(n):
            m = self._at + i - self._latency
            inside = 0 <= m < self._given.shape[1]
            out[:, i] = self._given[:, m] if inside else 0.0
        self._at += n


def panned_sources(seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Two sources with the same kind of spectrum, one mostly left, one mostly right:
    (sources float32[2, frames, 2], mixture)."""
    rng = np.random.default_rng(3)
    n = int(seconds * 44100)
    a, b = (np.convolve(rng.normal(size=n), np.ones(8) / 8, "same") for _ in range(2))
    src = np.stack([np.stack([a, 0.2 * a], 1), np.stack([0.2 * b, b], 1)]).astype(np.float32)
    return src, src.sum(0)


def test_stereo_images_undo_leakage() -> None:
    """Estimates that leak 40 % of each source into the other are pulled apart by the
    sources' stereo images: each stem gains more than 3 dB of SDR (after the filter's
    memory has filled), and the stems still add up to the mixture."""
    src, mix = panned_sources()
    leaky = np.stack([0.6 * src[0] + 0.4 * src[1], 0.4 * src[0] + 0.6 * src[1]])
    filt = WienerFilter(GivenStems(leaky), n_fft=1024, memory_seconds=1.0)
    assert filt.latency_samples == 1024
    got = filt.separate(mix, 4096)
    settled = slice(44100, None)
    for j in range(2):
        before = metrics.sdr(src[j, settled], leaky[j, settled])
        after = metrics.sdr(src[j, settled], got[j, settled])
        assert after > before + 3.0, (j, before, after)
    assert np.abs(got.sum(0) - mix).max() < 1e-5


def test_exact_estimates_pass_through() -> None:
    """Perfect estimates of sources with different images come back (nearly) unchanged."""
    src, mix = panned_sources(2.0)
    got = WienerFilter(GivenStems(src), n_fft=512, memory_seconds=0.5).separate(mix, 1000)
    for j in range(2):
        assert metrics.sdr(src[j, 22050:], got[j, 22050:]) > 30.0


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_latency_blocks_and_degenerate_input(channels: int) -> None:
    """Any block size gives the same samples; the latency is the inner one plus n_fft; a
    signal identical in every channel (a singular covariance), silence and one channel are
    finite; the stems add up to the input delayed by the latency."""
    x = music(1.0, channels=1, seed=2)
    x = np.repeat(x, channels, axis=1)
    x[20000:30000] = 0.0
    est = np.stack([0.7 * x, 0.3 * x]) + 0.01 * np.random.default_rng(1).normal(
        size=(2, *x.shape)).astype(np.float32)
    filt = WienerFilter(GivenStems(est, latency=100), n_fft=256, memory_seconds=0.2)
    assert filt.latency_samples == 356
    assert filt.latency_terms == {"given": 100, "wiener_window": 256}
    whole = filt.separate(x, 8192)
    filt.prepare(44100, 333, channels)
    parts = [filt.process(x[i:i + 333]) for i in range(0, len(x), 333)] + [filt.flush()]
    streamed = np.concatenate(parts, axis=1)
    np.testing.assert_array_equal(streamed[:, filt.latency_samples:][:, :len(x)], whole)
    assert np.isfinite(whole).all()
    assert np.abs(whole.sum(0) - x).max() < 1e-5
    assert np.abs(streamed[:, :256]).max() == 0.0  # before the filter's first frame


def test_process_into_allocates_nothing() -> None:
    x = music(1.5, channels=2, seed=4)
    est = np.stack([0.5 * x, 0.5 * x])
    filt = WienerFilter(GivenStems(est), n_fft=1024).prepare(44100, 512, 2)
    retained, peak, where = block_allocations(filt, x, 512, warmup=4)
    assert retained <= 512, f"retained {retained} bytes at {where}"
    # Transient: views, scalars and numpy's FFT bookkeeping (its float32 FFT would convert a
    # copy: 100 KB here), far below one frame of spectra (3 x 2 x 513 x 16 bytes = 49 KB).
    assert peak < 8192, f"transient peak {peak} bytes"


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wiener")
    build_and_convert(d, "spec", variant="spec", out_frames=2)
    return d


def write_card(folder: Path, name: str, **fields: object) -> Path:
    card = {"format": "rtsep-ensemble/1", "name": name, "members": ["spec"],
            "wiener": {"n_fft": 512, "memory_seconds": 2.0}, **fields}
    path = folder / f"{name}.ensemble.json"
    path.write_text(json.dumps(card))
    return path


def test_card_with_wiener_filters_a_real_model(member: Path) -> None:
    """An ensemble card with a ``wiener`` section and one member loads as that model behind
    the filter: its latency grows by n_fft, its stems differ from the model's and still add
    up to the input."""
    sep = load(write_card(member, "filtered"))
    assert isinstance(sep, WienerFilter)
    model = Separator.load(member / "spec.tflite")
    assert sep.latency_samples == model.latency_samples + 512
    assert sep.card.name == "filtered"
    x = music(1.0, channels=2, seed=7)
    got, plain = sep.separate(x), model.separate(x)
    assert np.abs(got - plain).max() > 1e-3
    assert np.abs(got.sum(0) - x).max() < 1e-4


@pytest.mark.parametrize("fields,message", [
    ({"wiener": None}, "at least two model names"),
    ({"wiener": {"n_fft": 1000}}, "power of two"),
    ({"wiener": {"memory_seconds": 0}}, "memory_seconds should be a number > 0"),
    ({"wiener": {"window": 3}}, "wiener should be an object"),
    ({"members": []}, "at least one model name"),
])
def test_broken_wiener_cards_are_one_line_errors(member: Path, fields: dict,
                                                 message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load(write_card(member, "broken", **fields))


def test_ship_ensemble_with_wiener(tmp_path: Path) -> None:
    """``ship_ensemble --wiener`` ships one model behind the filter: the card holds the
    filter's settings and the numbers `rtsep eval` measures; the .md says what it is."""
    from test_eval import make_rendered

    from rtsep.evaluate import evaluate
    from rtsep.models.ship_ensemble import main as ship_ensemble

    dest = tmp_path / "shipped"
    build_and_convert(dest, "s1", stems=("drums", "bass"), variant="spec", out_frames=2)
    data = tmp_path / "data"
    make_rendered(data)
    assert ship_ensemble(["--name", "s1w", "--members", "s1", "--wiener", "512,2",
                          "--data", str(data), "--dest", str(dest), "--live-blocks", "2048",
                          "--live-seconds", "0.5"]) == 0
    card = json.loads((dest / "s1w.ensemble.json").read_text())
    assert card["wiener"] == {"n_fft": 512, "memory_seconds": 2.0}
    again = evaluate(dest / "s1w.ensemble.json", str(data)).to_json()
    assert card["validation"]["sdr_over_floor_db"] == again["sdr_over_floor_db"]
    md = (dest / "s1w.md").read_text()
    assert "Wiener filter" in md and "STFT 512" in md
