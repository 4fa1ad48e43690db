"""The official SAM 2.1 video predictor and medmem's model with the same random weights, and a synthetic volume.

Shared by the benchmark scripts (`propagation.py`, `profile_step.py`); imports nothing from `tests/`. The official
model is built by the official package's own hydra builder (`sam2.build_sam.build_sam2_video_predictor`) from its
YAML, at the requested input size, with its own random initialisation; medmem's model then loads its state dict
strictly. The official `sam2` package is needed (`scripts/setup.sh --test` installs it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch

OFFICIAL_YAML = {"sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
                 "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml"}


def make_frames(n: int, hw: Tuple[int, int] = (160, 160), seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: a slowly moving, breathing ellipse on a noisy background."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[:h, :w]
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        ph = 2 * np.pi * t / max(n, 1)
        img = 40 + rng.normal(0, 8, (h, w))
        cy, cx, r = h / 2 + 10 * np.sin(ph), w / 2 + 12 * np.cos(ph), 25 + 5 * np.sin(3 * ph)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 150
        out[t] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return out


def write_frames(frames: np.ndarray, folder: Path) -> Path:
    """JPEG files 00000.jpg, ... (the official predictor reads a folder of frames)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def read_frames(folder: Path) -> np.ndarray:
    """(n, H, W, 3) uint8 frames of a folder written by `write_frames` (decoded as the official predictor does)."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(folder).glob("*.jpg"))])


def box_of(hw: Tuple[int, int]) -> np.ndarray:
    """The benchmark's box prompt (x0, y0, x1, y1) around the ellipse on frame 0."""
    h, w = hw
    return np.array([w / 2 - 35, h / 2 - 35, w / 2 + 35, h / 2 + 35], np.float32)


def build_official(name: str, image_size: int, seed: int = 0):
    """The official video predictor (CPU, eval, random weights) at `image_size`; object-score bias raised so that
    the random model predicts non-empty masks (memories then carry real masks)."""
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(seed)
    off = build_sam2_video_predictor(OFFICIAL_YAML[name], ckpt_path=None, device="cpu", mode="eval",
                                     hydra_overrides_extra=[f"++model.image_size={image_size}"])
    off.fill_hole_area = 0  # its hole filling needs the package's CUDA extension
    with torch.no_grad():
        off.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(8.0)
    return off


def build_medmem(name: str, image_size: int, state_dict: dict):
    """medmem's model of the same config and size with the given (official) state dict, loaded strictly."""
    from medmem.config import get_config
    from medmem.model import SAM2Model

    model = SAM2Model(get_config(name).replace(image_size=image_size))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
