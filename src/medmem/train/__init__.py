"""Training: SAM 2 losses, prompt simulation, clip sampling, the trainer (single device and DDP),
SAMed-2 confidence memory in training, and the continual multi-task schedule.

    from medmem.train import TrainConfig, train
    result = train(TrainConfig(data="medbank/manifest.json", model="medmem_small_256", steps=2000))

Command line: ``medmem train --help``; guide: docs/training.md.
"""
from .config import TrainConfig
from .data import PreparedCase, RawCase, build_dataset, load_raw_cases, prepare_case
from .losses import LossWeights, mask_losses, sigmoid_focal_loss
from .schedule import FREEZE_GROUPS, WarmupCosine, freeze, lr_factor, param_groups
from .trainer import TrainResult, Trainer, train

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "RawCase", "PreparedCase", "prepare_case",
           "build_dataset", "load_raw_cases", "LossWeights", "mask_losses", "sigmoid_focal_loss", "FREEZE_GROUPS",
           "WarmupCosine", "freeze", "lr_factor", "param_groups"]
