#!/usr/bin/env bash
# Fine-tune LiteMedSAM's mask decoder for medmem_lite_ft_256 on the CPU (scripts/finetune_lite_decoder.py) and
# ship the result: fp16 differences to LiteMedSAM's decoder in src/medmem/assets/medmem_lite_ft_256.safetensors.
#   scripts/train_lite_ft_model.sh [STEPS]
# Data: the MedBank-mini 3D tasks (runs/lite3d, made by scripts/lite_data.sh), more volumes of the whole-organ
# tasks mri_brain and ct_body (runs/medbank_whole) and of mri_brain_cortex (runs/medbank_cortex, _cortex2: two
# seeds, as --max-cases counts per manifest). Encoder outputs are computed once (runs/lite_ft_v3/features.pt);
# training checkpoints every 50 steps and resumes when run again. The recipe of the third shipped version (v3):
# skull-stripped brain copies (--strip), half the boxes on whole slices tight as users draw them (--tight-frac),
# half of the others loose, each side out by up to 100 % of the object on whole-organ samples and 25 % on the
# others (--loose-frac 0.5 --loose-max 1.0,0.25), as a tracked box is where an object shrinks fast (the bottom
# of a brain) while LiteMedSAM's own answers to very loose boxes are not worth keeping; 800 steps (~17 min on
# 2 idle cores, features ~4 min). docs/default_model.md (lite_ft card) has the comparison with v1 and v2.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-800}
PY=.venv/bin/python
MM=.venv/bin/medmem
source scripts/lite_data.sh  # runs/lite3d
[ -f runs/medbank_whole/manifest.json ] || "$MM" data synth runs/medbank_whole --seed 5 --size 160 --cases-per-task 8 \
  --tasks mri_brain,ct_body
[ -f runs/medbank_cortex/manifest.json ] || "$MM" data synth runs/medbank_cortex --seed 5 --size 160 \
  --cases-per-task 8 --tasks mri_brain_cortex
[ -f runs/medbank_cortex2/manifest.json ] || "$MM" data synth runs/medbank_cortex2 --seed 6 --size 160 \
  --cases-per-task 8 --tasks mri_brain_cortex
"$PY" scripts/finetune_lite_decoder.py --data runs/lite3d/manifest.json runs/medbank_whole/manifest.json \
  runs/medbank_cortex/manifest.json runs/medbank_cortex2/manifest.json --out runs/lite_ft_v3 --steps "$STEPS" \
  --batch 6 --every 4 --max-cases 3 --strip 0.6,1.6 --tight-frac 0.5 --loose-frac 0.5 --loose-max 1.0,0.25
cp runs/lite_ft_v3/medmem_lite_ft_256.safetensors src/medmem/assets/medmem_lite_ft_256.safetensors
