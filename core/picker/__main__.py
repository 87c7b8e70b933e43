"""`python -m mattebridge.core.picker PLATE ...`: the same as `mattebridge pick PLATE ...`."""
from __future__ import annotations

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["pick", *sys.argv[1:]]))
