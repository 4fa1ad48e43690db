"""`TrainConfig`: every knob of a training run, as one plain dataclass (saved in checkpoints)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

#: fields that may differ between a run and its resumption (everything else is taken from the checkpoint)
RESUMABLE_FIELDS = ("steps", "val_every", "save_every", "log_every", "stop_at", "device", "progress", "out",
                    "val_cases", "encoder_cache", "encoder_cache_dir")


@dataclass
class TrainConfig:
    """A training run. Defaults follow SAM 2's training recipe where it has one.

    Steps count optimizer updates; one update sees ``batch_size × accum`` samples per process
    (× world size under DDP). A sample is one object of one case: a clip of ``clip_len``
    consecutive slices/frames for 3D and video cases, one image for 2D cases.
    """

    # ---- data and model
    data: Union[str, List[str], None] = None  # MedBank-mini manifest / its folder, or an MSD/nnU-Net/SAMed-2/npz
    #                                           folder; a list: several sources at once
    model: Optional[str] = None           # registered model config (`medmem models`); None: from `init`
    init: Optional[str] = None            # weights to start from (official .pt or medmem .safetensors)
    adapter_frames: int = 0               # > 0: add a temporal adapter (all trunk blocks) with this clip length
    out: str = "runs/train"
    tasks: Tuple[str, ...] = ()           # restrict to these tasks (all if empty); the order of a continual run
    noisy_labels: bool = False            # train on the noisy labels of a synthetic set (evaluate on clean)
    label_noise: float = 0.0              # corrupt this fraction of training cases on the fly (any data set)
    intensity: str = "auto"               # scaling to [0, 1] (medmem.preprocess.to_unit_range)
    val_split: str = "val"                # held-out split (falls back to "test" when a set has no "val")
    val_fraction: float = 0.1             # hold-out share for layouts without a validation split
    val_cases: int = 32                   # at most this many held-out cases per evaluation (0 = all)
    # ---- optimisation
    steps: int = 1000
    batch_size: int = 4
    clip_len: int = 8
    accum: int = 1
    lr: float = 1e-4
    min_lr_ratio: float = 0.1             # cosine decays to lr × min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.1
    betas: Tuple[float, float] = (0.9, 0.999)
    layer_decay: float = 1.0              # < 1: layer-wise lr decay over the Hiera trunk
    grad_clip: float = 0.1                # max gradient norm (SAM 2: 0.1); 0 disables
    freeze: Tuple[str, ...] = ()          # image_encoder, temporal_adapter, prompt_encoder, mask_decoder, memory, litemedsam
    encoder_cache: int = 0                # with a frozen image encoder: keep this many slices' features in RAM
    encoder_cache_dir: str = ""           # ... and on disk here, for later runs on the same data (safetensors)
    amp: str = "auto"                     # "bf16", "none", or "auto" (bf16 on CUDA, fp32 elsewhere)
    # ---- loss (SAM 2 weights)
    w_mask: float = 20.0
    w_dice: float = 1.0
    w_iou: float = 1.0
    w_class: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True
    # ---- prompt simulation
    prob_box: float = 0.5                 # box (else one positive click) on prompted frames
    prob_mask: float = 0.1                # clips (T > 1): ground-truth mask prompt instead of points
    box_jitter: float = 0.1               # each box side moves by up to this fraction of the box size
    max_cond_frames: int = 2              # prompted frames per clip: 1..max (first frame always)
    correction_iters: int = 3             # corrective clicks per corrected frame
    max_extra_correct_frames: int = 1     # tracked frames that also get corrective clicks (then become prompted)
    click_mode: str = "random"            # corrective click: "random" (SAM 2 training) or "center" (largest region)
    prob_click_from_gt: float = 0.1       # a corrective click drawn from the ground truth instead of the error
    full_clip_prob: float = 1.0           # prefer clips whose every frame contains the object
    reverse_prob: float = 0.5             # clips played backwards (propagation in both directions)
    # ---- memory
    memory: str = "fifo"                  # "fifo" (SAM 2) or "confidence" (SAMed-2 bank, in addition)
    bank_capacity: int = 640
    bank_k: int = 4
    bank_threshold: float = 0.0
    bank_conf_weight: float = 1.0
    # ---- schedule
    schedule: str = "standard"            # "standard" or "continual" (tasks in sequence)
    steps_per_task: int = 0               # continual: steps per task (total = steps_per_task × tasks)
    restart_lr_per_task: bool = True      # continual: warm-up + cosine restart at each task
    # ---- run
    val_every: int = 0                    # evaluate every N steps (0: only at the end)
    save_every: int = 100                 # checkpoint every N steps (and at the end)
    log_every: int = 1
    seed: int = 0
    device: Optional[str] = None
    find_unused_parameters: bool = True   # DDP
    progress: bool = True
    stop_at: Optional[int] = None         # stop after this step (schedule still spans `steps`): for tests/preemption

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.freeze = tuple(self.freeze)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.schedule == "continual":
            if not self.tasks or self.steps_per_task <= 0:
                raise ValueError("a continual schedule needs tasks and steps_per_task > 0")
            self.steps = self.steps_per_task * len(self.tasks)
        elif self.schedule != "standard":
            raise ValueError(f"schedule must be 'standard' or 'continual', got {self.schedule!r}")
        if self.memory not in ("fifo", "confidence"):
            raise ValueError(f"memory must be 'fifo' or 'confidence', got {self.memory!r}")
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'none', got {self.amp!r}")
        if self.click_mode not in ("random", "center"):
            raise ValueError(f"click_mode must be 'random' or 'center', got {self.click_mode!r}")
        for name in ("steps", "batch_size", "clip_len", "accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError("label_noise must be a fraction in [0, 1]")
        if not 0.0 <= self.full_clip_prob <= 1.0:
            raise ValueError("full_clip_prob must be a probability in [0, 1]")
        if self.warmup < 0 or self.correction_iters < 0 or self.max_cond_frames < 1:
            raise ValueError("warmup and correction_iters must be >= 0, max_cond_frames >= 1")
        from .schedule import FREEZE_GROUPS

        bad = [g for g in self.freeze if g not in FREEZE_GROUPS]
        if bad:
            raise ValueError(f"unknown freeze group(s) {bad}; choose from {', '.join(FREEZE_GROUPS)}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: Dict[str, Any], **overrides: Any) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        kw = {k: v for k, v in d.items() if k in known}
        kw.update(overrides)
        return TrainConfig(**kw)
