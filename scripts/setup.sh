#!/usr/bin/env bash
# Set up medmem in ./.venv on a fresh machine (CPU is enough).
#   scripts/setup.sh          runtime install
#   scripts/setup.sh --test   also the test tools, the onnx extra and the official `sam2` package (test oracle only)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
LOG=$(mktemp)
pipi() {  # pip install, quiet; on failure show pip's output and stop
  if ! "$VPY" -m pip install "$@" >"$LOG" 2>&1; then
    grep -v "^WARNING: Location" "$LOG" | tail -30 >&2
    echo "setup.sh: pip install $* failed" >&2
    exit 1
  fi
}
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true   # best effort; any recent pip works
# torch first, pinned to the release that lies on this workplace's disk (CPU works; CUDA used where present)
"$VPY" -c "import torch" 2>/dev/null || pipi "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = "--test" ]; then
  pipi -e ".[test,serve,onnx]"   # onnx: the ONNX export and onnxruntime backend tests (tests/export)
  # the browser tests of `medmem serve` drive Debian's chromium (apt; never a browser download)
  if [ ! -x /usr/bin/chromium ]; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$LOG" 2>&1; then
      tail -20 "$LOG" >&2
      echo "setup.sh: 'apt-get install -y chromium' failed (needed by tests/server browser tests)" >&2
      exit 1
    fi
  fi
  # the official implementation, a test oracle only (never a runtime dependency); CPU build
  "$VPY" -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 pipi --no-build-isolation "sam2==1.1.0"
  "$VPY" -c "import sam2, pytest, onnxruntime"
else
  pipi -e ".[serve]"
fi
"$VPY" -c "import medmem, SimpleITK, monai"
rm -f "$LOG"
