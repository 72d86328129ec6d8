"""``python -m activekd_core ...``: the command line (see :mod:`activekd_core.cli`)."""

from __future__ import annotations

import sys

from activekd_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
