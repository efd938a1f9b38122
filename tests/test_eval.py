"""Evaluation: metrics on cases with a known answer, and ``rtsep eval`` end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_model, music

from rtsep import metrics
from rtsep.cli import main
from rtsep.errors import MissingExtraError

RATE = 44100
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- metrics with known answers ------------------------------------------------------------
def test_sdr_of_a_known_error_energy():
    s = np.ones((1000, 2), np.float32)  # energy 2000
    rng = np.random.default_rng(0)
    e = rng.normal(size=s.shape)
    e *= np.sqrt(20.0 / np.sum(e * e))  # error energy exactly 20
    got = metrics.sdr(s, s + e)
    assert got == pytest.approx(10 * np.log10((2000 + metrics.EPS) / (20 + metrics.EPS)),
                                abs=1e-6)
    assert got == pytest.approx(20.0, abs=1e-6)
    assert metrics.sdr(s, s) == pytest.approx(10 * np.log10((2000 + metrics.EPS) / metrics.EPS))
    assert metrics.sdr(np.zeros_like(s), np.zeros_like(s)) == 0.0  # silence: finite, 0 dB
    with pytest.raises(ValueError, match="shape"):
        metrics.sdr(s, s[:10])


@pytest.mark.parametrize("snr_db", [0.0, 6.0, -6.0])
def test_best_gain_of_source_plus_orthogonal_noise(snr_db):
    """mix = s + n, <s, n> = 0: g = S/(S+N); SDR(g*mix) = 10 log10(1 + S/N), while the mixture
    itself scores 10 log10(S/N): scaling alone gains 3 dB at 0 dB SNR."""
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4000, 2))
    r = rng.normal(size=s.shape)
    n = r - (np.sum(r * s) / np.sum(s * s)) * s  # orthogonal to s
    n *= np.sqrt(np.sum(s * s) / np.sum(n * n) / 10 ** (snr_db / 10))
    mix = s + n
    S, N = np.sum(s * s), np.sum(n * n)
    assert metrics.best_gain(s, mix) == pytest.approx(S / (S + N), rel=1e-9)
    assert metrics.sdr(s, mix) == pytest.approx(snr_db, abs=1e-6)
    est = metrics.best_gain_estimate(s, mix)
    assert est.dtype == np.float32
    assert metrics.sdr(s, est) == pytest.approx(10 * np.log10(1 + 10 ** (snr_db / 10)), abs=1e-4)
    assert metrics.best_gain(s, np.zeros_like(s)) == 0.0


def test_oracle_irm_disjoint_bands_and_transparency():
    t = np.arange(int(1.5 * RATE)) / RATE
    low = sum(np.sin(2 * np.pi * f * t + f) for f in (110, 165, 220, 330)) * 0.2
    high = sum(np.sin(2 * np.pi * f * t + f) for f in (5000, 6300, 7700)) * 0.1
    stems = np.stack([np.stack([low, 0.7 * low], 1), np.stack([high, high], 1)]).astype(np.float32)
    mix = stems.sum(axis=0)
    est = metrics.oracle_irm(stems, mix)
    assert est.shape == stems.shape and est.dtype == np.float32
    for i in range(2):
        assert metrics.sdr(stems[i], est[i]) > 20.0
    np.testing.assert_allclose(est.sum(axis=0), mix, atol=1e-5)  # masks sum to one
    one = metrics.oracle_irm(mix[None, :100], mix[:100])  # shorter than one FFT frame
    np.testing.assert_allclose(one[0], mix[:100], atol=1e-5)


def test_bss_without_museval_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "museval", None)  # import fails
    with pytest.raises(MissingExtraError, match="pip install museval"):
        metrics.bss_sdr(np.zeros((1, 100, 2)), np.zeros((1, 100, 2)), RATE)


# -- rtsep eval end to end ------------------------------------------------------------------
def _write_song(folder: Path, stems: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in stems.items():
        sf.write(str(folder / f"{name}.wav"), a, RATE, subtype="FLOAT")
    sf.write(str(folder / "mixture.wav"), sum(stems.values()), RATE, subtype="FLOAT")


def _stems(seconds: float, seed: int) -> dict[str, np.ndarray]:
    m = music(seconds, seed=seed)
    rng = np.random.default_rng(seed)
    drums = (rng.normal(0, 0.1, m.shape) * (rng.random((m.shape[0], 1)) < 0.05)).astype(
        np.float32)
    return {"drums": drums, "bass": m}


def make_rendered(root: Path) -> None:
    """Rendered layout, valid split: alpha (1.6 s, longer than one file-mode block), beta with
    silent bass, gamma whose drums the manifest excludes."""
    songs = {"alpha": _stems(1.6, 1), "beta": _stems(1.0, 2), "gamma": _stems(1.0, 3)}
    songs["beta"]["bass"][:] = 0.0
    manifest = {"format": "rtsep-rendered-v1", "stems": ["drums", "bass"],
                "subsets": {"train": [], "valid": list(songs)}, "songs": {}}
    for name, stems in songs.items():
        _write_song(root / "valid" / name, stems)
        manifest["songs"][name] = {"song": name, "split": "valid",
                                   "exclude_stems": ["drums"] if name == "gamma" else []}
    (root / "train").mkdir()
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def eval_model(model_dir: Path) -> Path:
    """Identity masks for every stem; stems in another order than the data, plus vocals."""
    return make_model(model_dir, "eval-identity", stems=("bass", "drums", "vocals"),
                      identity=True)


def _mdx(ref: np.ndarray, est: np.ndarray, eps: float = 1e-7) -> float:
    """MDX SDR written out independently (eps as in the MDX challenge's scoring)."""
    ref, est = ref.astype(np.float64), est.astype(np.float64)
    return 10 * np.log10((np.sum(ref ** 2) + eps) / (np.sum((ref - est) ** 2) + eps))


def test_eval_end_to_end(tmp_path, eval_model, capsys):
    data = tmp_path / "data"
    make_rendered(data)
    out_json, out_png = tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.png"
    code = main(["eval", "--model", str(eval_model), "--data", str(data), "--json",
                 str(out_json), "--plot", str(out_png), "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "over floor" in captured.out and "oracle IRM" in captured.out
    assert "vocals" in captured.err  # said which model stem was skipped

    res = json.loads(out_json.read_text())
    for key in ("command", "model", "data", "stems", "skipped_stems", "settings", "means",
                "sdr_db", "sdr_over_floor_db", "songs", "excerpt"):
        assert key in res
    assert res["command"].startswith("rtsep eval --model ")
    assert res["model"]["name"] == "eval-identity" and len(res["model"]["sha256"]) == 64
    assert res["data"]["subset"] == "valid" and res["data"]["kind"] == "rendered"
    assert res["stems"] == ["bass", "drums"]  # the model's order
    assert res["skipped_stems"] == {"model_only": ["vocals"], "data_only": []}
    assert res["songs"]["beta"]["stems"]["bass"]["skipped"].startswith("silent")
    assert res["songs"]["gamma"]["stems"]["drums"]["skipped"].startswith("excluded")
    assert res["means"]["bass"]["songs"] == 2 and res["means"]["drums"]["songs"] == 2

    for song in ("alpha", "beta", "gamma"):
        mix, _ = sf.read(str(data / "valid" / song / "mixture.wav"), dtype="float32")
        for stem, row in res["songs"][song]["stems"].items():
            if "skipped" in row:
                continue
            ref, _ = sf.read(str(data / "valid" / song / f"{stem}.wav"), dtype="float32")
            assert row["mixture"] == pytest.approx(_mdx(ref, mix), abs=1e-6)
            g = np.sum(ref.astype(np.float64) * mix) / np.sum(mix.astype(np.float64) ** 2)
            assert row["gain"] == pytest.approx(g, rel=1e-9)
            assert row["best_gain"] == pytest.approx(_mdx(ref, g * mix), abs=1e-4)
            assert row["over_floor"] == pytest.approx(row["model"] - row["best_gain"])
            # identity masks: the model returns the (delay-compensated) mixture
            assert row["model"] == pytest.approx(row["mixture"], abs=1e-3)
            assert row["oracle_irm"] > min(row["best_gain"], 60.0)  # beta: drums == mix
    means = res["means"]
    alpha_beta = [res["songs"][s]["stems"]["drums"]["mixture"] for s in ("alpha", "beta")]
    assert means["drums"]["mixture"] == pytest.approx(np.mean(alpha_beta))
    assert means["mean"]["over_floor"] == pytest.approx(
        np.mean([means[s]["over_floor"] for s in ("bass", "drums")]))
    assert res["sdr_over_floor_db"]["mean"] == means["mean"]["over_floor"]

    png = out_png.read_bytes()
    assert png[:8] == PNG_MAGIC
    from matplotlib.image import imread

    assert imread(str(out_png)).shape[0] > 400


def test_eval_oracle_at_the_models_resolution(tmp_path, eval_model, capsys):
    """--oracle-fft N: the oracle column is the ideal ratio mask at STFT N, hop N/4 (here the
    models' 64-sample frames), recorded in the settings; a size that is no multiple of 4 is a
    one-line error."""
    data = tmp_path / "data"
    make_rendered(data)
    out = tmp_path / "e.json"
    assert main(["eval", "--model", str(eval_model), "--data", str(data), "--json", str(out),
                 "--oracle-fft", "64", "-q"]) == 0
    res = json.loads(out.read_text())
    assert res["settings"]["oracle_fft"] == 64 and "STFT 64, hop 16" in res["methods"]["oracle_irm"]
    folder = data / "valid" / "alpha"
    refs = np.stack([sf.read(str(folder / f"{s}.wav"), dtype="float32")[0]
                     for s in ("drums", "bass")])
    mix, _ = sf.read(str(folder / "mixture.wav"), dtype="float32")
    irm = metrics.oracle_irm(refs, mix, 64, 16)
    long = metrics.oracle_irm(refs, mix)
    for i, stem in enumerate(("drums", "bass")):
        row = res["songs"]["alpha"]["stems"][stem]
        assert row["oracle_irm"] == pytest.approx(metrics.sdr(refs[i], irm[i]), abs=1e-6)
        assert abs(row["oracle_irm"] - metrics.sdr(refs[i], long[i])) > 0.01
    capsys.readouterr()
    assert main(["eval", "--model", str(eval_model), "--data", str(data),
                 "--oracle-fft", "30", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--oracle-fft" in err and len(err.splitlines()) == 1


def test_eval_is_what_rtsep_file_writes(tmp_path, tiny_model):
    """The scored samples are exactly rtsep file's (FLOAT subtype), across block edges."""
    from rtsep.engine import Separator
    from rtsep.filemode import BLOCK, separate_file

    x = music(1.7, seed=4)
    assert len(x) > BLOCK
    path = tmp_path / "song.wav"
    sf.write(str(path), x, RATE, subtype="FLOAT")
    sep = Separator.load(tiny_model)
    res = separate_file(sep, path, tmp_path / "out", sep.stems, subtype="FLOAT", progress=False)
    mine = sep.separate(x)
    for i, out in enumerate(res.outputs):
        written, _ = sf.read(str(out), dtype="float32")
        np.testing.assert_array_equal(mine[i], written)


def test_eval_musdb_layout_max_seconds_and_songs(tmp_path, eval_model, capsys):
    root = tmp_path / "musdb"
    for k, name in enumerate(("Artist - One", "Artist - Two")):
        stems = _stems(1.2, 10 + k)
        stems["vocals"] = 0.5 * music(1.2, seed=20 + k)[::-1].copy()
        stems["other"] = 0.3 * music(1.2, seed=30 + k)
        _write_song(root / "test" / name, stems)
    out_json = tmp_path / "m.json"
    code = main(["eval", "--model", str(eval_model), "--data", f"musdb:{root}", "--songs",
                 "Artist - Two", "--max-seconds", "0.5", "--json", str(out_json), "-q"])
    assert code == 0, capsys.readouterr().err
    res = json.loads(out_json.read_text())
    assert res["data"]["subset"] == "test" and res["data"]["kind"] == "musdb"
    assert res["stems"] == ["bass", "drums", "vocals"]
    assert res["skipped_stems"] == {"model_only": [], "data_only": ["other"]}
    assert list(res["songs"]) == ["Artist - Two"]
    assert res["songs"]["Artist - Two"]["seconds"] == pytest.approx(0.5, abs=1e-4)
    assert "--max-seconds 0.5" in res["command"]


def test_eval_errors_are_one_line(tmp_path, eval_model, capsys, monkeypatch):
    data = tmp_path / "data"
    make_rendered(data)
    cases = [
        (["--data", str(tmp_path / "nowhere")], "not found"),
        (["--data", str(data), "--songs", "alpha,nope"], "unknown song"),
        (["--data", str(data), "--max-seconds", "0"], "--max-seconds"),
        (["--data", "musdb:"], "needs a path"),
    ]
    monkeypatch.setitem(sys.modules, "museval", None)
    cases.append((["--data", str(data), "--bss"], "pip install museval"))
    for extra, message in cases:
        code = main(["eval", "--model", str(eval_model), "-q", *extra])
        err = capsys.readouterr().err
        assert code == 1, (extra, err)
        assert message in err and err.count("\n") == 1, err
