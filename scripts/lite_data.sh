# Sourced by scripts/train_lite_model.sh and scripts/train_lite_ft_model.sh (after `cd` to the repository root):
# the MedBank-mini 3D tasks the LiteMedSAM-based models train and are compared on (runs/lite3d; 13 tasks incl.
# the whole-organ ones, seed 0, 96 px, 4 cases per task), made once.
MM=${MM:-.venv/bin/medmem}
source scripts/task_sets.sh  # LITE3D_TASKS
[ -f runs/lite3d/manifest.json ] || "$MM" data synth runs/lite3d --seed 0 --size 96 --cases-per-task 4 --tasks "$LITE3D_TASKS"
