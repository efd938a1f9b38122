"""Keeping C libraries' chatter (PortAudio, ALSA, libjack, LiteRT's "Created XNNPACK
delegate") off the terminal, so our one-line errors and status lines stay readable."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Mute file descriptor 2 (C libraries' prints) for the duration; Python errors still
    propagate as exceptions and are reported by the caller after fd 2 is restored."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreter): nothing to mute
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
