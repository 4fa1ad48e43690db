#!/usr/bin/env bash
# Fine-tune LiteMedSAM's mask decoder for medmem_lite_ft_256 on the CPU (scripts/finetune_lite_decoder.py) and
# ship the result: fp16 differences to LiteMedSAM's decoder in src/medmem/assets/medmem_lite_ft_256.safetensors.
#   scripts/train_lite_ft_model.sh [STEPS]
# Data: the MedBank-mini 3D tasks as scripts/train_lite_model.sh makes them (runs/lite3d) and more volumes of the
# two whole-organ tasks (runs/medbank_whole). Encoder outputs are computed once (runs/lite_whole/features.pt);
# training checkpoints every 50 steps and resumes when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-400}
PY=.venv/bin/python
MM=.venv/bin/medmem
T3D=ct_liver_tumor,ct_kidney,ct_aorta,ct_lung_nodule,ct_abdomen_multi,ct_vertebrae,ct_body,mri_brain_tumor,\
mri_brain,mri_hippocampus,mri_cardiac,mri_prostate,us_echo_lv
[ -f runs/lite3d/manifest.json ] || "$MM" data synth runs/lite3d --seed 0 --size 96 --cases-per-task 4 --tasks "$T3D"
[ -f runs/medbank_whole/manifest.json ] || "$MM" data synth runs/medbank_whole --seed 5 --size 160 --cases-per-task 8 \
  --tasks mri_brain,ct_body
"$PY" scripts/finetune_lite_decoder.py --data runs/lite3d/manifest.json runs/medbank_whole/manifest.json \
  --out runs/lite_whole --steps "$STEPS" --batch 6 --every 4 --max-cases 3
cp runs/lite_whole/medmem_lite_ft_256.safetensors src/medmem/assets/medmem_lite_ft_256.safetensors
