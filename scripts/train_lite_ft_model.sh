#!/usr/bin/env bash
# Fine-tune LiteMedSAM's mask decoder for medmem_lite_ft_256 on the CPU (scripts/finetune_lite_decoder.py) and
# ship the result: fp16 differences to LiteMedSAM's decoder in src/medmem/assets/medmem_lite_ft_256.safetensors.
#   scripts/train_lite_ft_model.sh [STEPS]
# Data: the MedBank-mini 3D tasks (runs/lite3d, made by scripts/lite_data.sh) and more volumes of the
# two whole-organ tasks (runs/medbank_whole). Encoder outputs are computed once (runs/lite_whole/features.pt);
# training checkpoints every 50 steps and resumes when run again. The recipe (since the second version of the
# shipped decoder): skull-stripped brain copies (--strip), half the boxes on whole slices tight as users draw
# them (--tight-frac), 40 % of the others loose as tracked boxes are where an object shrinks (--loose-frac);
# 800 steps (~35 min on 2 idle cores, features ~8 min). docs/default_model.md (lite_ft card) has the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-800}
PY=.venv/bin/python
MM=.venv/bin/medmem
source scripts/lite_data.sh  # runs/lite3d
[ -f runs/medbank_whole/manifest.json ] || "$MM" data synth runs/medbank_whole --seed 5 --size 160 --cases-per-task 8 \
  --tasks mri_brain,ct_body
"$PY" scripts/finetune_lite_decoder.py --data runs/lite3d/manifest.json runs/medbank_whole/manifest.json \
  --out runs/lite_whole --steps "$STEPS" --batch 6 --every 4 --max-cases 3 --strip 0.6,1.6 --tight-frac 0.5 \
  --loose-frac 0.4
cp runs/lite_whole/medmem_lite_ft_256.safetensors src/medmem/assets/medmem_lite_ft_256.safetensors
