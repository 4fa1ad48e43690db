#!/usr/bin/env bash
# Set up medmem in ./.venv on a fresh machine (CPU is enough).
#   scripts/setup.sh          runtime install
#   scripts/setup.sh --test   also the test tools and the official `sam2` package (test oracle only)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned to the release that lies on this workplace's disk (CPU works; CUDA used where present)
"$VPY" -c "import torch" 2>/dev/null || "$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v "^WARNING: Location" || true
"$VPY" -c "import torch" 
if [ "${1:-}" = "--test" ]; then
  "$VPY" -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  # the official implementation, a test oracle only (never a runtime dependency); CPU build
  "$VPY" -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 "$VPY" -m pip install -q --no-build-isolation "sam2==1.1.0" 2>&1 | grep -v "^WARNING: Location" || true
  "$VPY" -c "import sam2, pytest"
else
  "$VPY" -m pip install -q -e . 2>&1 | grep -v "^WARNING: Location" || true
fi
"$VPY" -c "import medmem"
