"""``python -m rtsep``: the same as the ``rtsep`` command."""

import sys

from .cli import main

sys.exit(main())
