#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-blender.sh
exec .venv/bin/python -m pytest -q "$@"
