"""Read a MUSDB18-HQ style folder: ``ROOT/<subset>/<track>/{mixture,<stem>...}.wav``.

Both a real MUSDB18-HQ (subsets ``train`` and ``test``; stems drums, bass, other, vocals) and
the data rendered by ``rtsep data render`` (subsets ``train`` and ``valid``; stems drums, bass,
other; plus ``manifest.json``) load the same way. With a manifest, the subset's tracks are the
ones it lists, and per-song ``exclude_stems`` (stems that must not be used for training) are
attached to each Track.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rtsep.errors import ConfigError

MUSDB_STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals")
SUBSETS: tuple[str, ...] = ("train", "test", "valid")
MANIFEST = "manifest.json"


class DataLayoutError(ConfigError):
    """The folder does not have the expected layout (the message says what was expected)."""


@dataclass(frozen=True)
class Track:
    """One song folder."""

    name: str
    folder: Path
    paths: dict[str, Path] = field(hash=False)  # "mixture" and every stem present -> wav
    stems: tuple[str, ...]  # stems present (not "mixture"), MUSDB order first
    exclude_stems: tuple[str, ...] = ()
    subset: str = ""

    @property
    def mixture(self) -> Path | None:
        return self.paths.get("mixture")

    def usable(self, stem: str) -> bool:
        """Whether ``stem`` may be used for training from this track."""
        return stem in self.stems and stem not in self.exclude_stems


def _stem_order(names) -> tuple[str, ...]:
    known = [s for s in MUSDB_STEMS if s in names]
    return tuple(known + sorted(n for n in names if n not in MUSDB_STEMS))


def _listing(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "nothing (unreadable)"
    if not names:
        return "nothing (empty)"
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_manifest(root: str | Path) -> dict | None:
    """The rendered data set's manifest.json, or None for a plain MUSDB18-HQ folder."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataLayoutError(f"unreadable {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("songs"), dict):
        raise DataLayoutError(f"{path} is not an rtsep data manifest (no 'songs')")
    return data


def _track(folder: Path, subset: str, exclude: tuple[str, ...]) -> Track:
    wavs = {p.stem: p for p in folder.glob("*.wav") if not p.name.startswith(".")}
    if not wavs:
        mp4 = list(folder.glob("*.stem.mp4"))
        hint = " (this looks like MUSDB18 .stem.mp4: use MUSDB18-HQ wav)" if mp4 else ""
        raise DataLayoutError(
            f"no .wav files in track folder {folder}: expected mixture.wav and stem wavs "
            f"({', '.join(MUSDB_STEMS)}); found {_listing(folder)}{hint}"
        )
    stems = _stem_order([n for n in wavs if n != "mixture"])
    if not stems:
        raise DataLayoutError(
            f"no stem wavs in {folder}: expected some of {', '.join(MUSDB_STEMS)}; "
            f"found {_listing(folder)}"
        )
    return Track(folder.name, folder, wavs, stems, exclude, subset)


def load_tracks(root: str | Path, subset: str) -> list[Track]:
    """All tracks of ``subset`` ("train", "test" or "valid") under ``root``, sorted by name."""
    root = Path(root)
    if subset not in SUBSETS:
        raise DataLayoutError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if not root.is_dir():
        raise DataLayoutError(f"data folder not found: {root}")
    sub = root / subset
    if not sub.is_dir():
        raise DataLayoutError(
            f"no {subset}/ folder in {root}: expected {root}/{subset}/<track>/mixture.wav "
            "(MUSDB18-HQ has train/ and test/, rendered data has train/ and valid/); "
            f"found {_listing(root)}"
        )
    manifest = read_manifest(root)
    tracks = []
    if manifest is not None:
        subsets = manifest.get("subsets", {})
        if subset in subsets:
            names = list(subsets[subset])
        else:
            names = sorted(n for n, e in manifest["songs"].items() if e.get("split") == subset)
        for name in names:
            folder = sub / name
            if not folder.is_dir():
                raise DataLayoutError(
                    f"{root / MANIFEST} lists {subset}/{name} but {folder} is missing "
                    "(an unfinished render: run it again to resume)"
                )
            entry = manifest["songs"].get(name, {})
            tracks.append(_track(folder, subset, tuple(entry.get("exclude_stems", ()))))
    else:
        folders = sorted(p for p in sub.iterdir() if p.is_dir() and not p.name.startswith("."))
        tracks = [_track(f, subset, ()) for f in folders]
    if not tracks:
        raise DataLayoutError(
            f"no track folders in {sub}: expected {sub}/<track>/mixture.wav; found {_listing(sub)}"
        )
    return tracks


def common_stems(tracks: list[Track]) -> tuple[str, ...]:
    """Stems present in every track (MUSDB order): e.g. 4 for MUSDB18-HQ, 3 for rendered."""
    if not tracks:
        return ()
    names = set(tracks[0].stems)
    for t in tracks[1:]:
        names &= set(t.stems)
    return _stem_order(names)
