#!/usr/bin/env bash
# The full GPU benchmark of issue #16, printed as one table, in under 8 minutes on a machine with an NVIDIA GPU
# and no internet. Everything is made locally: seeded random-weight SAM 2.1 tiny and base+ checkpoints at 1024 px
# (shapes and cost do not depend on the weights), the bedroom footage as 1080p and 4K ACEScg half EXR plates.
#
#   bash bench/gpu.sh                 # from the repository, on the GPU machine; the table is the last thing printed
#   bash bench/gpu.sh --cpu-smoke     # the same steps at a tiny size on the CPU (tests/test_bench_smoke.py)
#
# Python: the repository's .venv with a CUDA build of torch (scripts/setup.sh with MATTEBRIDGE_TORCH_INDEX set,
# on a machine with internet; carry the repository and its .venv, or the wheels, to the GPU machine), or
# PYTHON=/path/to/python where torch (CUDA), sam2 1.1.0, OpenImageIO, PyOpenColorIO, pyzmq, hydra-core, iopath,
# pillow and mattebridge import (e.g. the machine's own torch plus the rest installed from carried wheels:
# `pip install --no-index --no-deps --target DIR wheels/*.whl` and `pip install --no-index --no-deps
# --no-build-isolation --target DIR .` for mattebridge, then PYTHONPATH=DIR).
# WORK=folder keeps plates and checkpoints between runs (default: a temporary folder, removed at the end).
#
# Steps, each stopped when it outruns its share (450 s in all, so the table is out within 8 minutes; a stopped
# step's missing cells show as "–"):
#   1. tiny at 1080p and 4K: floor (decode + encode), feed, writer, whole pipeline with a stand-in engine (CPU per
#      frame / floor), bare model, end-to-end, bare SAM2VideoPredictor (sam2's init_state + propagate_in_video)
#   2. base+ at 1080p and 4K: bare model, end-to-end, bare SAM2VideoPredictor
#   3. click -> matte latency from a real `mattebridge serve`, 4K, tiny: idle and during another
#      client's propagation, features cached and first clicks
#   4. peak GPU memory (torch.cuda.max_memory_allocated) of whole runs of 100 and 1000 frames, 1080p, tiny
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
export PYTHONUNBUFFERED=1  # the steps' progress in order

if [ "${1:-}" = "--cpu-smoke" ]; then
  device=cpu big=96x64 sizes=96x64 image=64 frames=3 rounds=1 clicks=2 memory=3,6 limit=600
else
  device=cuda big=4k sizes=1080p,4k image=1024 frames=16 rounds=3 clicks=10 memory=100,1000 limit=450
  [ -x "$py" ] || command -v "$py" >/dev/null || { echo "gpu.sh: no Python at $py (set PYTHON=...)" >&2; exit 2; }
  if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu.sh: no CUDA device for $py (torch.cuda.is_available() is false, or torch is missing); run it on a" \
      "machine with an NVIDIA GPU and a CUDA build of torch, or pass --cpu-smoke" >&2
    exit 2
  fi
fi

work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mattebridge-gpu-bench.XXXXXX")}
[ -n "${WORK:-}" ] || trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
rm -f "$results"
common=(--device "$device" --image-size "$image" --frames "$frames" --rounds "$rounds" --work "$work" --json "$results")

step() {  # step SHARE_SECONDS ARGS...: bench/throughput.py, stopped at its share or at the overall limit
  local share=$1 left=$((limit - SECONDS))
  shift
  [ "$share" -lt "$left" ] || share=$left
  if [ "$share" -le 10 ]; then
    echo "gpu.sh: no time left for: $*" >&2
    return
  fi
  echo "gpu.sh: [${SECONDS}s] $* (at most ${share}s)" >&2
  timeout --kill-after=10 "$share" "$py" bench/throughput.py "${common[@]}" "$@" >/dev/null
  local rc=$?
  [ "$rc" -eq 0 ] || { echo "gpu.sh: step stopped (exit $rc): $*" >&2; incomplete=1; }
}
incomplete=0

step 190 --sizes "$sizes" --model-config sam2.1_hiera_t
step 95 --sizes "$sizes" --model-config sam2.1_hiera_b+ --parts model,sam2
step 75 --mode clicks --sizes "$big" --model-config sam2.1_hiera_t --clicks "$clicks"
step 90 --mode memory --sizes "${sizes%%,*}" --model-config sam2.1_hiera_t --memory-frames "$memory"

"$py" -c 'import os, platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print("machine:", platform.machine(), os.cpu_count(), "cores,", gpu, "| torch", torch.__version__)'
echo "cells: best / median of ${rounds} rounds, ${frames} frames each; total ${SECONDS}s"
[ -s "$results" ] && "$py" bench/throughput.py --mode table --json "$results"
[ "$incomplete" -eq 0 ] || { echo "gpu.sh: incomplete: a step stopped early (see above)" >&2; exit 1; }
