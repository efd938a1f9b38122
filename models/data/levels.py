"""Stem levels of a rendered data set: each stem's energy over the mixture's, in dB.

Why: a model can learn a data set's level balance (how loud drums sit against bass) as a
prior; comparing two renders' balances says whether mixing them teaches a wrong one (DATA.md,
"Generated songs"). ``python -m rtsep.models.data.levels DIR [DIR ...]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from .midi_split import STEMS
from .musdb import load_tracks


def stem_levels(root: str | Path, subset: str = "train", seconds: float = 40.0,
                max_songs: int | None = None, originals_only: bool = True,
                ) -> dict[str, np.ndarray]:
    """Per stem, the energy of its first ``seconds`` over the mixture's, in dB, one value per
    song (silent stems left out); ``originals_only`` skips augmented ``@aug`` versions."""
    tracks = [t for t in load_tracks(root, subset) if not (originals_only and "@" in t.name)]
    levels: dict[str, list[float]] = {s: [] for s in STEMS}
    for track in tracks[:max_songs]:
        rate = sf.info(str(track.paths["mixture"])).samplerate
        mix, _ = sf.read(track.paths["mixture"], frames=int(seconds * rate))
        mix_energy = float(np.mean(np.square(mix)))
        for stem in STEMS:
            x, _ = sf.read(track.paths[stem], frames=len(mix))
            energy = float(np.mean(np.square(x)))
            if energy > 1e-7 and mix_energy > 0:
                levels[stem].append(10 * np.log10(energy / mix_energy))
    return {s: np.asarray(v) for s, v in levels.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="+", help="rendered data folders")
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--max-songs", type=int, default=None)
    args = p.parse_args(argv)
    for root in args.data:
        levels = stem_levels(root, seconds=args.seconds, max_songs=args.max_songs)
        parts = [f"{s} {np.median(v):+.1f} dB "
                 f"({np.percentile(v, 10):+.1f}..{np.percentile(v, 90):+.1f})"
                 for s, v in levels.items() if len(v)]
        print(f"{root} ({max(len(v) for v in levels.values())} songs): " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
