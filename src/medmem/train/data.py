"""Training data: cases from a MedBank-mini manifest, a dataset layout or memory, prepared once at the
model size and kept in memory.

A `RawCase` holds arrays in source geometry; `prepare_case` turns it into a `PreparedCase`:
the image scaled to [0, 1] and resized to S × S (float16, 1 or 3 channels), the training label
resized to S × S (nearest), and the slices each object occupies. Held-out cases keep their clean
source-resolution label and spacing for Dice/NSD.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import imagenet_normalize, resize_to_model, volume_scaler


@dataclass
class RawCase:
    """One case in source geometry.

    image: (N, H, W) or (N, H, W, 3) (N = 1 for 2D); label: (N, H, W) integer ids (0 = background);
    label_noisy: same shape or None; spacing: array-axis order (N-axis, row, column) in mm;
    dims: 2 for single images, 3 for volumes and videos.
    """

    id: str
    task: str
    image: np.ndarray
    label: np.ndarray
    split: str = "train"
    dims: int = 3
    spacing: Tuple[float, ...] = (1.0, 1.0, 1.0)
    label_noisy: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        img, lab = np.asarray(self.image), np.asarray(self.label)
        if img.shape[-1] == 4 and img.ndim in (3, 4) and img.shape[:-1][-2:] == lab.shape[-2:]:
            img = img[..., :3]  # drop alpha
        if lab.ndim == 2:
            lab = lab[None]
        if img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3 and lab.shape[0] == 1 and img.shape[:2] == lab.shape[1:]):
            img = img[None]
        if img.shape[:3] != lab.shape:
            raise ValueError(f"case {self.id}: image shape {img.shape} does not match label shape {lab.shape}")
        self.image, self.label = img, lab
        if self.label_noisy is not None:
            ln = np.asarray(self.label_noisy)
            self.label_noisy = ln[None] if ln.ndim == 2 else ln
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) == 2:
            sp = (1.0,) + sp
        self.spacing = sp


@dataclass
class PreparedCase:
    """A case at model size. images (N, C, S, S) float16 in [0, 1], C ∈ {1, 3}; masks (N, S, S) uint8
    training label ids; objects {id: sorted slice indices where present}. Held-out cases also keep
    ``eval_label`` (N, H, W) clean ids at source size and ``spacing`` (array order, mm)."""

    id: str
    task: str
    dims: int
    split: str
    images: torch.Tensor
    masks: np.ndarray
    objects: Dict[int, np.ndarray]
    spacing: Tuple[float, ...]
    source_hw: Tuple[int, int]
    eval_label: Optional[np.ndarray] = None

    @property
    def num_slices(self) -> int:
        return int(self.masks.shape[0])

    def model_input(self, idx: Union[Sequence[int], slice], device: Optional[torch.device] = None) -> torch.Tensor:
        """Slices ``idx`` as normalised model input (n, 3, S, S) float32."""
        x = self.images[idx].to(device=device, dtype=torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return imagenet_normalize(x)


def _resize_labels(label: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(label.astype(np.int64)))[:, None].float()
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="nearest-exact")
    return t[:, 0].to(torch.uint8).numpy()


def prepare_case(raw: RawCase, size: int, *, intensity: str = "auto", noisy: bool = False,
                 keep_eval_label: bool = False, chunk: int = 16) -> PreparedCase:
    """Scale, resize and index one case (see the module docstring)."""
    img = raw.image
    scaler = volume_scaler(img, intensity)
    chunks = []
    for s in range(0, img.shape[0], chunk):
        unit = np.asarray(scaler(img[s:s + chunk]), dtype=np.float32)
        t = torch.from_numpy(np.ascontiguousarray(unit))
        t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t[:, None]
        chunks.append(resize_to_model(t, size).clamp_(0, 1).to(torch.float16))
    images = torch.cat(chunks)
    lab = raw.label_noisy if (noisy and raw.label_noisy is not None) else raw.label
    masks = _resize_labels(lab, size)
    objects = {}
    for obj in np.unique(masks):
        if obj == 0:
            continue
        present = np.flatnonzero((masks == obj).reshape(masks.shape[0], -1).any(1))
        objects[int(obj)] = present
    return PreparedCase(raw.id, raw.task, raw.dims, raw.split, images, masks, objects, raw.spacing,
                        (int(raw.label.shape[1]), int(raw.label.shape[2])),
                        raw.label.astype(np.uint8) if keep_eval_label else None)


# ----------------------------------------------------------------------------- sources
def _holdout(case_id: str, fraction: float) -> bool:
    return (zlib.crc32(case_id.encode()) % 10_000) < fraction * 10_000


def is_synth_manifest(path: Union[str, Path]) -> bool:
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        return False
    try:
        from ..data.synth import read_manifest

        read_manifest(p)
        return True
    except ValueError:
        return False


def load_raw_cases(source: Union[str, Path, Sequence[Union[str, Path]]], tasks: Sequence[str] = (),
                   splits: Iterable[str] = ("train", "val"), val_fraction: float = 0.1) -> List[RawCase]:
    """All labelled cases of a data source (or of several), restricted to ``tasks`` (if given) and ``splits``.

    Several sources are concatenated; a case id found in two of them is an error (it would make
    hold-out and logs ambiguous).

    MedBank-mini manifests keep their own splits. Dataset layouts (MSD, nnU-Net, SAMed-2 PNG,
    CVPR npz) read through `medmem.data.layouts`; layouts without a validation list get a
    deterministic hold-out of ``val_fraction`` of their training cases (by case id) as "val";
    SAMed-2 slices of one volume are stacked into a 3D case when they share a shape.
    """
    if not isinstance(source, (str, Path)):
        sources = list(source)
        if not sources:
            raise ValueError("no data source given")
        out, seen = [], {}
        for src in sources:
            for c in load_raw_cases(src, tasks, splits, val_fraction):
                if c.id in seen:
                    raise ValueError(f"case id {c.id!r} is in both {seen[c.id]} and {src}")
                seen[c.id] = src
                out.append(c)
        return out
    splits = set(splits)
    if is_synth_manifest(source):
        from ..data.synth import load_manifest

        out = []
        for c in load_manifest(source, split=sorted(splits), task=list(tasks) or None):
            out.append(RawCase(c.id, c.task, c.image, c.label, c.split, c.dims, c.spacing_array_order,
                               c.label_noisy))
        return out
    return _load_layout(Path(source), tasks, splits, val_fraction)


def _load_layout(root: Path, tasks: Sequence[str], splits: set, val_fraction: float) -> List[RawCase]:
    from ..data.layouts import detect_layout, iter_cases

    layout = detect_layout(root)
    if layout == "samed2":
        return _load_samed2(root, tasks, splits, val_fraction)
    cases = list(iter_cases(root, split=None if layout == "cvpr_npz" else "train"))
    cases = [c for c in cases if c.label is not None and (not tasks or c.task in tasks)]
    out: List[RawCase] = []
    for c in cases:
        split = "val" if _holdout(c.case_id, val_fraction) else "train"
        if split not in splits:
            continue
        multi = len(c.meta.get("channels") or {}) > 1 or (isinstance(c.image, list) and len(c.image) > 1)
        vol = c.load_image(channel=0 if multi else None)
        arr = np.asarray(vol.array)
        out.append(RawCase(c.case_id, c.task, arr, np.asarray(c.load_label().array), split,
                           2 if arr.shape[0] == 1 else 3, tuple(vol.spacing_zyx)))
    return out


def _load_samed2(root: Path, tasks: Sequence[str], splits: set, val_fraction: float) -> List[RawCase]:
    """SAMed-2 PNG slices: the layout's own train/val/test lists when present (else a hold-out by
    volume); runs of consecutive slices of one volume become 3D cases, lone slices 2D cases."""
    from ..data.layouts import group_slices, iter_samed2

    dirs = [d for d in root.iterdir() if d.is_dir() and (d / "image").is_dir() and (d / "mask").is_dir()
            and (not tasks or d.name in tasks)]
    listed = [sp for sp in ("train", "val", "test")
              if (root / f"{sp}.txt").is_file() or any((d / f"{sp}.txt").is_file() for d in dirs)]
    by_split: Dict[str, list] = {}
    if listed:
        for sp in listed:
            by_split[sp] = list(iter_samed2(root, sp, tasks=list(tasks) or None))  # type: ignore[arg-type]
    else:
        for c in iter_samed2(root, None, tasks=list(tasks) or None):
            sp = "val" if _holdout(f"{c.task}/{c.meta.get('volume_id')}", val_fraction) else "train"
            by_split.setdefault(sp, []).append(c)
    out: List[RawCase] = []
    for sp, cases in by_split.items():
        if sp not in splits:
            continue
        for (task, vol), group in group_slices(cases).items():
            imgs = [np.asarray(c.load_image().array) for c in group]
            labs = [np.asarray(c.load_label().array) for c in group]
            idx = [c.meta.get("slice_index") for c in group]
            runs: List[List[int]] = [[0]]
            for i in range(1, len(group)):
                consecutive = (idx[i] is not None and idx[i - 1] is not None and idx[i] == idx[i - 1] + 1
                               and imgs[i].shape == imgs[i - 1].shape)
                if consecutive:
                    runs[-1].append(i)
                else:
                    runs.append([i])
            for run in runs:
                if len(run) > 1:
                    rid = f"{task}/{vol}_{idx[run[0]]:03d}-{idx[run[-1]]:03d}"
                    out.append(RawCase(rid, task, np.concatenate([imgs[i] for i in run]),
                                       np.concatenate([labs[i] for i in run]), sp, 3, (1.0, 1.0, 1.0)))
                else:
                    i = run[0]
                    out.append(RawCase(group[i].case_id, task, imgs[i], labs[i], sp, 2, (1.0, 1.0, 1.0)))
    return out


@dataclass
class DataSet:
    """Prepared training and held-out cases."""

    train: List[PreparedCase] = field(default_factory=list)
    held_out: List[PreparedCase] = field(default_factory=list)

    def tasks(self) -> List[str]:
        return sorted({c.task for c in self.train} | {c.task for c in self.held_out})


def add_label_noise(raw: RawCase, rng: np.random.Generator) -> RawCase:
    """A copy of ``raw`` whose ``label_noisy`` is a corrupted label (`medmem.data.synth_noise`)."""
    from ..data.synth_noise import corrupt_label

    lab = raw.label[0] if raw.dims == 2 else raw.label
    noisy, _ = corrupt_label(lab, rng, raw.dims)
    return RawCase(raw.id, raw.task, raw.image, raw.label, raw.split, raw.dims, raw.spacing,
                   np.asarray(noisy).reshape(raw.label.shape).astype(raw.label.dtype))


def build_dataset(raws: Sequence[RawCase], size: int, *, val_split: str = "val", intensity: str = "auto",
                  noisy: bool = False, tasks: Sequence[str] = (), label_noise: float = 0.0,
                  seed: int = 0) -> DataSet:
    """Prepare training cases (split "train", noisy labels if asked) and held-out cases (``val_split``,
    or "test" when there is no such case) with clean labels. ``label_noise``: corrupt that fraction
    of the training cases (chosen and corrupted deterministically from ``seed`` and the case id)."""
    raws = [r for r in raws if not tasks or r.task in tasks]
    held_split = val_split if any(r.split == val_split for r in raws) else "test"
    ds = DataSet()
    for r in raws:
        if r.split == "train":
            if label_noise > 0:
                rng = np.random.default_rng([seed, zlib.crc32(r.id.encode()), 0x0153])
                if rng.random() < label_noise:
                    r = add_label_noise(r, rng)
                    noisy_here = True
                else:
                    noisy_here = noisy
            else:
                noisy_here = noisy
            ds.train.append(prepare_case(r, size, intensity=intensity, noisy=noisy_here))
        elif r.split == held_split:
            ds.held_out.append(prepare_case(r, size, intensity=intensity, noisy=False, keep_eval_label=True))
    if not ds.train:
        raise ValueError("no training cases" + (f" for tasks {list(tasks)}" if tasks else ""))
    return ds
