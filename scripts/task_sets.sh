# Named MedBank-mini task sets (sourced; sets variables only). Data behind a published figure is made with an
# explicit --tasks list, so adding a task to the registry (medmem.data.synth_tasks.TASKS) never changes it.
# LITE3D_TASKS: the 13 3D tasks the LiteMedSAM-based models train and are compared on (runs/lite3d).
LITE3D_TASKS=ct_liver_tumor,ct_kidney,ct_aorta,ct_lung_nodule,ct_abdomen_multi,ct_vertebrae,ct_body,mri_brain_tumor,\
mri_brain,mri_hippocampus,mri_cardiac,mri_prostate,us_echo_lv
# MEDBANK24_TASKS: the first 24 tasks, in registry order (every task before mri_brain_cortex was added): the
# data of the mechanism and calibration figures (runs/mech).
MEDBANK24_TASKS=$LITE3D_TASKS,us_breast_lesion,us_thyroid_nodule,xray_chest,xray_clavicle,endoscopy_polyp,\
endoscopy_instrument,dermoscopy_lesion,fundus_disc_cup,fundus_vessels,microscopy_nuclei,microscopy_glands
