"""2D prompted segmentation with an API familiar to SAM 2 users.

    predictor = medmem.ImagePredictor(model)
    predictor.set_image(image)              # (H, W) or (H, W, 3); uint8, uint16 or float
    masks, scores, logits = predictor.predict(box=[x0, y0, x1, y1], multimask_output=False)

Coordinates are (x, y) = (column, row) pixels of the original image. Several boxes at once are
decoded as one batch.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

from ..preprocess import Intensity, ResizeMode, coords_to_model, prepare_slice, to_source
from ..io.prompts import check_box, check_points
from ..model import ImageFeatures, SAM2Model
from .autocast import autocast
from .window import clip_to_window, prompt_windows

ArrayLike = Union[np.ndarray, torch.Tensor, list, tuple]


def _as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def validate_image(image: ArrayLike) -> np.ndarray:
    """A 2D image as (H, W) or (H, W, 3) array; clear errors for anything else."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    try:
        from PIL import Image as _PIL

        if isinstance(image, _PIL.Image):
            image = np.asarray(image)
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(image)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"image must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {arr.shape}"
                         + ("; for a volume use medmem.VolumeSession" if arr.ndim >= 3 else ""))
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # drop alpha
    if arr.size == 0 or min(arr.shape[:2]) == 0:
        raise ValueError(f"image is empty (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or inf pixels")
    return arr


class ImagePredictor:
    """Prompted 2D segmentation on one image at a time (features are computed once per image)."""

    def __init__(self, model: SAM2Model, *, intensity: Intensity = "auto", resize_mode: ResizeMode = "stretch",
                 mask_threshold: float = 0.0, dtype: Optional[torch.dtype] = None, backend: str = "torch") -> None:
        """intensity: how pixels are scaled to [0, 1] (see `medmem.preprocess.to_unit_range`; a CT
        window name for HU images). dtype: autocast dtype (default: `engine.autocast.resolve_dtype`, bf16
        on CUDA and on CPUs with AMX, fp32 elsewhere).
        backend: "torch", "onnxruntime" or "onnxruntime-int8" (`medmem.export.as_backend`; CPU)."""
        if backend != "torch":
            from ..export.backend import as_backend

            model = as_backend(model, backend)
        self.model = model.eval()
        self.intensity = intensity
        self.resize_mode = resize_mode
        self.mask_threshold = mask_threshold
        self.dtype = dtype
        self.reset()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset(self) -> None:
        self._features: Optional[ImageFeatures] = None
        self._embed: Optional[torch.Tensor] = None
        self._orig_hw: Optional[Tuple[int, int]] = None

    @torch.inference_mode()
    def set_image(self, image: ArrayLike) -> None:
        """Encode an image: (H, W) or (H, W, 3), uint8 / uint16 / float / bool."""
        arr = validate_image(image)
        self.reset()
        x = prepare_slice(arr, self.model.image_size, intensity=self.intensity, mode=self.resize_mode,
                          device=self.device)
        with autocast(self.device, self.dtype):
            feats = self.model.encode_image(x[None])
        embed = feats.vision_feats
        if self.model.cfg.directly_add_no_mem_embed and not self.model.cfg.raw_features_without_memory:
            embed = embed + self.model.no_mem_embed.view(1, -1, 1, 1)
        self._features, self._embed = feats, embed
        self._orig_hw = (int(arr.shape[0]), int(arr.shape[1]))

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    def _prompts(self, point_coords, point_labels, box, mask_input):
        h, w = self._orig_hw
        s = self.model.image_size
        boxes = pts = labels = None
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:  # (N, 2) or (B, N, 2); each set through the one validator
            pts = _as_float_array(point_coords, "point_coords")
            labels = np.asarray(point_labels)
            if pts.ndim == 1:
                pts = pts[None]
            if pts.shape[-1] != 2 or pts.ndim not in (2, 3):
                raise ValueError(f"point_coords must be (N, 2) or (B, N, 2), got shape {pts.shape}")
            if labels.ndim == 0:
                labels = labels[None]
            if labels.shape != pts.shape[:-1]:
                raise ValueError(f"point_labels shape {labels.shape} does not match point_coords {pts.shape} "
                                 f"(one label per point)")
            if pts.ndim == 2:
                pts, labels = pts[None], labels[None]
            checked = [check_points(p_, l_, (h, w)) for p_, l_ in zip(pts, labels)]
            pts, labels = np.stack([c[0] for c in checked]), np.stack([c[1] for c in checked])
        if box is not None:  # [x0, y0, x1, y1] or (B, 4), inclusive pixels (docs/io.md)
            boxes = _as_float_array(box, "box")
            if boxes.ndim == 1:
                boxes = boxes[None]
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"box must be [x0, y0, x1, y1] or (N, 4), got shape {boxes.shape}")
            if boxes.shape[0] == 0:
                raise ValueError("box is empty")
            boxes = np.stack([check_box(b_, (h, w)) for b_ in boxes])
        if pts is None and boxes is None and mask_input is None:
            raise ValueError("give at least one prompt: point_coords/point_labels, box or mask_input")
        # batch size: boxes and points must agree (points broadcast over boxes when given once)
        b = max(boxes.shape[0] if boxes is not None else 1, pts.shape[0] if pts is not None else 1)
        if boxes is not None and pts is not None and pts.shape[0] not in (1, b):
            raise ValueError(f"{boxes.shape[0]} boxes but {pts.shape[0]} point sets")
        coords_l, labels_l = [], []
        dev = self.device
        if boxes is not None:
            c = coords_to_model(boxes.reshape(-1, 2, 2), (h, w), s, self.resize_mode)
            coords_l.append(torch.as_tensor(c, dtype=torch.float32, device=dev).expand(b, -1, -1))
            labels_l.append(torch.tensor([[2, 3]], dtype=torch.int32, device=dev).expand(b, -1))
        if pts is not None:
            c = coords_to_model(pts, (h, w), s, self.resize_mode)
            coords_l.append(torch.as_tensor(c, dtype=torch.float32, device=dev).expand(b, -1, -1))
            labels_l.append(torch.as_tensor(labels, dtype=torch.int32, device=dev).expand(b, -1))
        point_inputs = (torch.cat(coords_l, 1), torch.cat(labels_l, 1)) if coords_l else None
        masks = None
        if mask_input is not None:
            m = _as_float_array(mask_input, "mask_input")
            low = self.model.sam_prompt_encoder.mask_input_size
            if m.ndim == 3:
                m = m[None]
            if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(low) or m.shape[0] not in (1, b):
                raise ValueError(f"mask_input must be (1, {low[0]}, {low[1]}) low-res logits (the third output of "
                                 f"a previous predict call), or (B, 1, {low[0]}, {low[1]}); got shape {m.shape}")
            masks = torch.as_tensor(m, dtype=torch.float32, device=dev).expand(b, -1, -1, -1)
        return point_inputs, masks, b

    @torch.inference_mode()
    def predict(self, point_coords: Optional[ArrayLike] = None, point_labels: Optional[ArrayLike] = None,
                box: Optional[ArrayLike] = None, mask_input: Optional[ArrayLike] = None,
                multimask_output: bool = True, return_logits: bool = False
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment from prompts in original-image pixels.

        point_coords (N, 2) with point_labels (N,) (1 = foreground, 0 = background); box [x0, y0, x1, y1]
        or (B, 4) for B objects at once; mask_input (1, 256, 256) low-res logits from a previous call.
        Returns masks (C, H, W) bool (or logits with return_logits), scores (C,), low-res logits
        (C, 256, 256); with B > 1 prompts each gains a leading B axis. C = 3 with multimask_output else 1.
        """
        if self._features is None:
            raise RuntimeError("call set_image(...) before predict(...)")
        point_inputs, masks_in, b = self._prompts(point_coords, point_labels, box, mask_input)
        m = self.model
        with autocast(self.device, self.dtype):
            point_inputs, read = m.read_clicks(self._embed, self._features.high_res, point_inputs, masks_in)
            if read:  # a box-trained decoder (cfg.click_boxes): a mask_input was the prior of the box
                masks_in = None
            pad = m.pad_points(point_inputs[1] if point_inputs is not None else None)
            sparse, dense = m.sam_prompt_encoder(point_inputs, None, masks_in, pad=pad)
            dec = m.sam_mask_decoder(self._embed, m.sam_prompt_encoder.dense_pe(), sparse, dense, multimask_output,
                                     repeat_image=b > 1, high_res_features=self._features.high_res)
        low = dec.masks.float()
        windows = prompt_windows(point_inputs, m.cfg.mask_window, m.image_size)
        if windows is not None:  # each box's masks stay inside it (engine/window.py)
            low = torch.stack([clip_to_window(low[i], w, m.image_size) for i, w in enumerate(windows)])
        full = to_source(low, self._orig_hw, self.resize_mode, m.image_size)
        low = torch.clamp(low, -32.0, 32.0)
        out = full if return_logits else full > self.mask_threshold
        masks_np, scores_np, low_np = out.cpu().numpy(), dec.iou_pred.float().cpu().numpy(), low.cpu().numpy()
        if b == 1:
            return masks_np[0], scores_np[0], low_np[0]
        return masks_np, scores_np, low_np
