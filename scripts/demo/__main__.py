"""Entry point: `python scripts/demo` (what `make demo` runs), or `python -m demo` from scripts/."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a directory: make the package importable by its name
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
