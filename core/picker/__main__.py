"""`python -m mattebridge.core.picker PLATE ...`: the same as `mattebridge pick PLATE ...`."""
from __future__ import annotations

import argparse
import sys

from ..errors import MatteBridgeError
from . import add_arguments, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mattebridge pick", description="Place prompts on a plate and track them.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MatteBridgeError as e:
        if args.debug:
            raise
        print(f"mattebridge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mattebridge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
