#!/usr/bin/env bash
# Set up ./.venv: torch first, then sam2 built without build isolation and without its torchvision
# requirement (either would pull a second, multi-GB torch), then mattebridge with its server, dev and picker extras.
#   MATTEBRIDGE_TORCH        torch requirement (default torch==2.13.0, the CPU build)
#   MATTEBRIDGE_TORCH_INDEX  a PyTorch wheel index for CUDA builds, e.g. https://download.pytorch.org/whl/cu128
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${MATTEBRIDGE_VENV:-.venv}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "setuptools>=64" wheel
"${pip[@]}" "${MATTEBRIDGE_TORCH:-torch==2.13.0}" ${MATTEBRIDGE_TORCH_INDEX:+--index-url "$MATTEBRIDGE_TORCH_INDEX"}
"$venv/bin/python" -c "import sam2" 2>/dev/null ||
  SAM2_BUILD_CUDA=${SAM2_BUILD_CUDA:-0} "${pip[@]}" --no-build-isolation --no-deps "sam2==1.1.0"
"${pip[@]}" -e ".[server,dev,picker,farm,trackers,matting]"
"$venv/bin/python" -c "import torch, sam2, OpenImageIO, PyOpenColorIO, zmq; print('mattebridge environment ready: torch', torch.__version__, '| CUDA', torch.cuda.is_available())"
