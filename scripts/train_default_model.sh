#!/usr/bin/env bash
# Re-train medmem's bundled default model on the CPU (2 cores: about 55 + 45 minutes).
#   scripts/train_default_model.sh [STAGE1_STEPS] [STAGE2_STEPS]
# Stage 1: from scratch on MedBank-mini (the 22 original synthetic tasks, seed 0) -> runs/default/
# Stage 2: fine-tune stage 1 on the same set plus the whole-organ tasks (mri_brain, ct_body; 24 cases
#          each) -> runs/default2/
# Both stages checkpoint every 50 steps and resume when the script is run again. The final weights
# are copied to src/medmem/assets/default_model.safetensors and evaluated (docs/default_model_eval.json).
set -euo pipefail
cd "$(dirname "$0")/.."
S1=${1:-2400}
S2=${2:-1200}
PY=.venv/bin/python
MM=.venv/bin/medmem
TASKS22=ct_liver_tumor,ct_kidney,ct_aorta,ct_lung_nodule,ct_abdomen_multi,ct_vertebrae,mri_brain_tumor,\
mri_hippocampus,mri_cardiac,mri_prostate,us_echo_lv,us_breast_lesion,us_thyroid_nodule,xray_chest,xray_clavicle,\
endoscopy_polyp,endoscopy_instrument,dermoscopy_lesion,fundus_disc_cup,fundus_vessels,microscopy_nuclei,\
microscopy_glands
[ -f runs/medbank/manifest.json ] || "$MM" data synth runs/medbank --seed 0 --size 128 --tasks "$TASKS22"
[ -f runs/medbank_whole/manifest.json ] || "$MM" data synth runs/medbank_whole --seed 0 --size 128 \
  --tasks mri_brain,ct_body --cases-per-task 24

OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$MM" train --data runs/medbank/manifest.json \
  --config medmem_small_256 --out runs/default --steps "$S1" --batch-size 4 --clip-len 3 --lr 3e-4 \
  --warmup 100 --correction-iters 1 --val-every 500 --val-cases 16 --save-every 50 --seed 0 --no-progress --resume

OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$MM" train --data runs/medbank/manifest.json \
  --data runs/medbank_whole/manifest.json --init runs/default/model.safetensors --out runs/default2 \
  --steps "$S2" --batch-size 4 --clip-len 3 --lr 2e-4 --warmup 50 --correction-iters 1 --val-every 0 \
  --val-cases 24 --save-every 50 --seed 1 --no-progress --resume

mkdir -p src/medmem/assets
cp runs/default2/model.safetensors src/medmem/assets/default_model.safetensors.tmp
mv src/medmem/assets/default_model.safetensors.tmp src/medmem/assets/default_model.safetensors
chmod 644 src/medmem/assets/default_model.safetensors
"$PY" scripts/evaluate_model.py --checkpoint src/medmem/assets/default_model.safetensors \
  --data runs/medbank/manifest.json --out docs/default_model_eval.json
