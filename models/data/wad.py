"""The General MIDI music inside Doom WAD files, as a folder of ``.mid`` files to render.

Debian's ``freedoom`` package ships two WADs (``/usr/share/games/doom/freedoom{1,2}.wad``,
BSD-3-Clause) whose music lumps (``D_*``) are 67 Standard MIDI files by many composers: rock,
metal, ambient and jazz pieces with GM drums and bass. They are compositions nobody here wrote,
which is what the separator lacks most (DATA.md, "Freedoom"). A WAD is a header (``IWAD`` or
``PWAD``, lump count, directory offset) and a directory of (offset, size, 8-byte name) entries;
the music is the lumps whose data start with ``MThd``. Lumps in Doom's older MUS format are
counted and skipped (Freedoom has none). A lump reused under several names (the same song on
two levels) is written once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WADS = (
    Path("/usr/share/games/doom/freedoom1.wad"),
    Path("/usr/share/games/doom/freedoom2.wad"),
)
HEADER = struct.Struct("<4sii")
ENTRY = struct.Struct("<ii8s")
MIDI_MAGIC = b"MThd"
MUS_MAGIC = b"MUS\x1a"


class WadError(Exception):
    """A user-facing problem with a WAD file (missing, not a WAD, truncated)."""


@dataclass(frozen=True)
class Lump:
    """One directory entry's name and data."""

    name: str
    data: bytes


def read_lumps(path: str | Path) -> list[Lump]:
    """Every lump of the WAD at ``path``, in directory order."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise WadError(f"cannot read {path}: {e.strerror or e}") from None
    if len(blob) < HEADER.size:
        raise WadError(f"{path} is not a WAD file (only {len(blob)} bytes)")
    kind, count, table = HEADER.unpack_from(blob)
    if kind not in (b"IWAD", b"PWAD"):
        raise WadError(f"{path} is not a WAD file (header {kind!r}, expected IWAD or PWAD)")
    if count < 0 or table < 0 or table + count * ENTRY.size > len(blob):
        raise WadError(f"{path} is truncated: its directory lies past the end of the file")
    lumps = []
    for i in range(count):
        offset, size, raw = ENTRY.unpack_from(blob, table + i * ENTRY.size)
        if size < 0 or offset < 0 or offset + size > len(blob):
            raise WadError(f"{path} is truncated: lump {i} lies past the end of the file")
        name = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        lumps.append(Lump(name, blob[offset:offset + size]))
    return lumps


def extract_music(wads: Sequence[str | Path], out: str | Path) -> tuple[list[Path], int]:
    """Write each distinct MIDI music lump of ``wads`` to ``out/<wad>_<lump>.mid``.

    Returns the files (new or already there) and the number of MUS lumps skipped. Files are
    written under a temporary name and renamed, so an interrupted run leaves no partial file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    files: list[Path] = []
    skipped_mus = 0
    for wad in wads:
        for lump in read_lumps(wad):
            if lump.data.startswith(MUS_MAGIC):
                skipped_mus += 1
                continue
            if not lump.data.startswith(MIDI_MAGIC):
                continue
            digest = hashlib.sha256(lump.data).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            target = out / f"{Path(wad).stem}_{lump.name}.mid".lower()
            if not target.exists() or target.read_bytes() != lump.data:
                fd, tmp = tempfile.mkstemp(dir=out, suffix=".part")
                with os.fdopen(fd, "wb") as f:
                    f.write(lump.data)
                os.replace(tmp, target)
            files.append(target)
    return files, skipped_mus


def add_wad_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rtsep data wad-music``."""
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for the .mid files")
    parser.add_argument(
        "--wad",
        metavar="WAD",
        action="append",
        default=None,
        help="WAD file, repeatable (default: Freedoom's two WADs, Debian package freedoom)",
    )


def run_wad_music(args: argparse.Namespace) -> int:
    """Run ``rtsep data wad-music``; returns the exit code."""
    wads = args.wad or [str(p) for p in DEFAULT_WADS]
    if not args.wad and not all(Path(w).exists() for w in wads):
        print("error: Freedoom's WADs are not installed (Debian package: freedoom)",
              file=sys.stderr)
        return 1
    try:
        files, skipped = extract_music(wads, args.out)
    except WadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    note = f"; skipped {skipped} MUS-format lumps" if skipped else ""
    if not files:
        print(f"error: no MIDI music lumps in {', '.join(map(str, wads))}{note}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} MIDI songs into {args.out}{note}")
    return 0


__all__ = ["DEFAULT_WADS", "Lump", "WadError", "add_wad_arguments", "extract_music",
           "read_lumps", "run_wad_music"]
