#!/usr/bin/env bash
# Set up ./.venv-blender: Blender 5.0 as a Python module (the `bpy` wheel from PyPI, Python 3.11), in its own
# virtual environment so the Blender tests run a real Blender the way production does: in a separate
# process, with the MatteBridge extension installed from its .zip (pyzmq and mattebridge come from the
# extension's wheels, never from this environment). Idempotent; a no-op when already set up.
#   PYTHON_BLENDER   the Python 3.11 interpreter to build it from (default: python3.11, else python3)
#   BPY_VERSION      default 5.0.1
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MATTEBRIDGE_BLENDER_VENV:-.venv-blender}
want=${BPY_VERSION:-5.0.1}
if [ -x "$venv/bin/python" ] &&
   "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('bpy') != '$want')" 2>/dev/null; then
  exit 0
fi
python=${PYTHON_BLENDER:-}
if [ -z "$python" ]; then
  if command -v python3.11 >/dev/null; then python=python3.11; else python=python3; fi
fi
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  { echo "setup-blender.sh: bpy $want needs Python 3.11 (set PYTHON_BLENDER)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "bpy==$want"
"$venv/bin/python" -c "import bpy; print('Blender', bpy.app.version_string, 'ready in $venv')"
