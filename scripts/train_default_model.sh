#!/usr/bin/env bash
# Re-train medmem's bundled default model (CPU is enough; about an hour on 2 cores).
#   scripts/train_default_model.sh [STEPS]
# Writes runs/default/ (checkpoints, metrics.jsonl; resumable: run it again to continue) and
# copies the final weights to src/medmem/assets/default_model.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-2400}
PY=.venv/bin/python
[ -f runs/medbank/manifest.json ] || .venv/bin/medmem data synth runs/medbank --seed 0 --size 128
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/medmem train --data runs/medbank/manifest.json \
  --config medmem_small_256 --out runs/default --steps "$STEPS" --batch-size 4 --clip-len 3 --lr 3e-4 \
  --warmup 100 --correction-iters 1 --val-every 500 --val-cases 16 --save-every 50 --seed 0 --no-progress --resume
cp runs/default/model.safetensors src/medmem/assets/default_model.safetensors
"$PY" scripts/evaluate_model.py --checkpoint src/medmem/assets/default_model.safetensors \
  --data runs/medbank/manifest.json --out docs/default_model_eval.json
