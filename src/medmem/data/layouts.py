"""Readers for the dataset layouts medical segmentation data comes in.

Each reader yields :class:`Case` objects (case id, task name, image, label,
split, metadata); images and labels stay on disk until ``case.load_image()``
/ ``case.load_label()``.

* **Medical Segmentation Decathlon** and **nnU-Net v1** (``iter_msd``):
  ``dataset.json`` with ``training`` / ``test`` lists, ``imagesTr/``,
  ``labelsTr/``, ``imagesTs/``.  MSD stores several MR sequences as one 4D
  NIfTI (choose with ``channel``); nnU-Net v1 splits them into
  ``case_0000.nii.gz``, ``case_0001.nii.gz``, ... while the json keeps the
  un-suffixed names.  macOS ``._*`` files shipped inside the MSD tarballs are skipped.
* **nnU-Net v2 raw** (``iter_nnunet``): ``dataset.json`` with
  ``channel_names``, ``labels`` (name -> int), ``file_ending``;
  ``imagesTr/{case}_{XXXX}{ending}`` (one file per channel),
  ``labelsTr/{case}{ending}``; an explicit ``"dataset"`` mapping is honoured.
* **SAMed-2 / MedBank PNG slices** (``iter_samed2``):
  ``root/Object_Modality_ID/{image,mask}/case_slice_NNN.png`` with
  ``train.txt`` / ``val.txt`` / ``test.txt`` (in each task folder, or at the
  root) listing one image per line (``./Task/image/x.png``,
  ``Task/image/x.png``, ``image/x.png`` or ``x.png``).
* **CVPR 2025 interactive challenge** ``.npz`` (``iter_cvpr_npz``): keys
  ``imgs`` (D, H, W), ``gts`` (D, H, W), ``spacing`` and optional ``boxes``
  (a pickled list of dicts ``z_min, z_max, z_mid, z_mid_x_min, z_mid_y_min,
  z_mid_x_max, z_mid_y_max``, one per label in increasing label order).
  ``spacing`` is in SimpleITK ``GetSpacing()`` order (x, y, z), as written by
  the MedSAM preprocessing scripts; pass ``spacing_order="zyx"`` for files
  that store it in array order.

:func:`iter_cases` picks the reader from what it finds in ``root``.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from ..io.filenames import natural_key


class LayoutError(ValueError):
    """A dataset folder does not follow the layout it claims (missing files, bad dataset.json, ...)."""


Split = Literal["train", "val", "test"]


@dataclass
class Case:
    """One training / evaluation case.

    Attributes:
        case_id: e.g. "la_003", "liver_12_slice_040", "CT_AbdTumor_HCC_004".
        task: dataset or task name ("Task02_Heart", "Kidney_CT_KiTS", ...).
        image: a path, a list of per-channel paths (nnU-Net), or an array.
        label: a path, an array, or None (unlabelled test cases).
        split: "train", "val", "test" or None.
        meta: layout extras: ``labels`` {id: name}, ``channels`` {index: name},
            ``spacing`` (x, y, z) and ``boxes`` for npz, ``volume_id`` / ``slice_index``
            for slice layouts, ``modality``, ``object``.
    """

    case_id: str
    task: str
    image: Union[Path, List[Path], np.ndarray]
    label: Union[Path, np.ndarray, None] = None
    split: Optional[str] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    def load_image(self, channel: Optional[int] = None) -> Any:
        """The image as a :class:`medmem.io.Volume` (``channel`` for multi-channel cases)."""
        from ..io import Volume, read_volume

        if self.meta.get("npz"):
            imgs, spacing = _npz_arrays(Path(self.image), self.meta)  # type: ignore[arg-type]
            return Volume(imgs, spacing=spacing, kind="volume" if imgs.shape[0] > 1 else "image",
                          meta={"source_path": str(self.image), "format": "npz"})
        if isinstance(self.image, np.ndarray):
            return Volume(self.image, kind="image" if self.image.ndim == 2 else "volume")
        if isinstance(self.image, list):
            if len(self.image) == 1:
                return read_volume(self.image[0])
            if channel is None:
                names = self.meta.get("channels") or {}
                opts = ", ".join(f"{i}={names.get(i, '?')}" for i in range(len(self.image)))
                raise LayoutError(f"case {self.case_id} has {len(self.image)} channels ({opts}); pass channel=")
            return read_volume(self.image[channel])
        n_channels = len(self.meta.get("channels") or {}) or 1
        if n_channels > 1:  # MSD: modalities along the 4th NIfTI dimension
            if channel is None:
                names = self.meta.get("channels") or {}
                opts = ", ".join(f"{i}={names[i]}" for i in sorted(names))
                raise LayoutError(f"case {self.case_id} has {n_channels} channels ({opts}); pass channel=")
            return read_volume(self.image, timepoint=channel)
        return read_volume(self.image, channel=channel)

    def load_label(self) -> Any:
        """The label map as a :class:`medmem.io.Volume` (integer array), or None."""
        from ..io import Volume, read_volume

        if self.label is None:
            return None
        if self.meta.get("npz"):
            with np.load(Path(self.label), allow_pickle=False) as z:
                gts = np.asarray(z[self.meta.get("label_key", "gts")])
            imgs_spacing = self.meta.get("spacing") or (1.0, 1.0, 1.0)
            return Volume(gts, spacing=imgs_spacing, kind="volume" if gts.shape[0] > 1 else "image")
        if isinstance(self.label, np.ndarray):
            return Volume(self.label, kind="image" if self.label.ndim == 2 else "volume")
        if self.meta.get("png_mask"):
            return Volume(read_png_mask(Path(self.label)), kind="image",
                          meta={"source_path": str(self.label), "format": "png"})
        return read_volume(self.label)


# --------------------------------------------------------------------------- helpers
def _visible(p: Path) -> bool:
    return not p.name.startswith(".")  # also skips macOS "._x.nii.gz" resource forks


def read_png_mask(path: Path) -> np.ndarray:
    """A mask PNG as integer labels ``(H, W)``.

    Palette indices are kept (VOC-style label PNGs), binary 0/255 greyscale
    masks become 0/1, other greyscale values are kept, RGB(A) masks collapse
    to 0/1 (any channel > 0).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except OSError as exc:
        raise LayoutError(f"{path}: not a readable mask image ({exc})") from exc
    if mode in ("RGB", "RGBA") or arr.ndim == 3:
        arr = (arr[..., :3] > 0).any(axis=-1).astype(np.uint8)
    elif mode == "1":
        arr = arr.astype(np.uint8)
    elif mode == "L" and arr.size and set(np.unique(arr).tolist()) <= {0, 255}:
        arr = (arr > 0).astype(np.uint8)  # binary masks saved as 0/255
    return arr


def read_dataset_json(root: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Parse ``root/dataset.json`` (MSD, nnU-Net v1 or v2) into a normalised dict.

    Keys: ``name``, ``format`` ("msd" or "nnunet_v2"), ``labels`` {int: name},
    ``regions`` (nnU-Net v2 region labels {name: [ints]}), ``channels``
    {int: name}, ``file_ending``, ``num_training``, ``raw`` (the parsed json).
    """
    root = Path(root)
    path = root / "dataset.json"
    if not path.is_file():
        raise LayoutError(f"{root}: no dataset.json (not an MSD / nnU-Net raw dataset folder)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise LayoutError(f"{path}: top level must be an object")
    labels: Dict[int, str] = {}
    regions: Dict[str, List[int]] = {}
    raw_labels = raw.get("labels") or {}
    if not isinstance(raw_labels, dict):
        raise LayoutError(f"{path}: 'labels' must be an object")
    for key, value in raw_labels.items():
        if str(key).lstrip("-").isdigit():  # MSD: {"0": "background", "1": "liver"}
            labels[int(key)] = str(value)
        elif isinstance(value, (int, float)) and float(value).is_integer():  # v2: {"liver": 1}
            labels[int(value)] = str(key)
        elif isinstance(value, (list, tuple)):
            regions[str(key)] = [int(v) for v in value]
        else:
            raise LayoutError(f"{path}: cannot read label entry {key!r}: {value!r}")
    chan_src = raw.get("channel_names") or raw.get("modality") or {}
    channels = {int(k): str(v) for k, v in chan_src.items()} if isinstance(chan_src, dict) else {}
    fmt = "nnunet_v2" if ("channel_names" in raw or "file_ending" in raw) else "msd"
    return {
        "name": str(raw.get("name") or root.name),
        "format": fmt,
        "labels": dict(sorted(labels.items())),
        "regions": regions,
        "channels": dict(sorted(channels.items())),
        "file_ending": str(raw.get("file_ending") or ".nii.gz"),
        "num_training": raw.get("numTraining"),
        "raw": raw,
    }


def _rel(root: Path, entry: str) -> Path:
    entry = str(entry)
    return root / (entry[2:] if entry.startswith("./") else entry)


def _channel_files(root: Path, listed: Path, ending: str) -> List[Path]:
    """nnU-Net v1: ``imagesTr/la_003.nii.gz`` listed, ``la_003_0000.nii.gz`` ... on disk."""
    name = listed.name
    stem = name[: -len(ending)] if name.endswith(ending) else listed.stem
    pattern = re.compile(re.escape(stem) + r"_(\d{4})" + re.escape(ending) + "$")
    found = sorted((p for p in listed.parent.glob(f"{stem}_*{ending}") if pattern.match(p.name)),
                   key=lambda p: p.name)
    return found


def _case_id(path: Path, ending: str) -> str:
    name = path.name
    return name[: -len(ending)] if name.endswith(ending) else path.stem


# --------------------------------------------------------------------------- MSD / nnU-Net v1
def iter_msd(root: Union[str, os.PathLike], split: Literal["train", "test"] = "train") -> Iterator[Case]:
    """Cases of a Medical Segmentation Decathlon (or nnU-Net v1) task folder.

    ``split="train"`` uses ``training`` (image + label), ``"test"`` uses
    ``test`` (images only).  Missing files raise :class:`LayoutError`.
    """
    root = Path(root)
    info = read_dataset_json(root)
    raw = info["raw"]
    key = {"train": "training", "test": "test"}.get(split)
    if key is None:
        raise ValueError(f"split must be 'train' or 'test' for MSD layouts, got {split!r}")
    entries = raw.get(key) or []
    if not isinstance(entries, list):
        raise LayoutError(f"{root}/dataset.json: {key!r} must be a list")
    ending = ".nii.gz"
    for entry in entries:
        if isinstance(entry, dict):
            img_rel, lab_rel = entry.get("image"), entry.get("label")
        else:
            img_rel, lab_rel = entry, None
        if img_rel is None:
            raise LayoutError(f"{root}/dataset.json: entry without 'image': {entry!r}")
        img = _rel(root, img_rel)
        if img.name.startswith("._"):
            continue
        image: Union[Path, List[Path]]
        if img.is_file():
            image = img
        else:
            chans = _channel_files(root, img, ending)
            if not chans:
                raise LayoutError(f"{root}: image {img_rel} listed in dataset.json is missing (no {img.name} "
                                  f"and no {_case_id(img, ending)}_0000{ending})")
            image = chans
        label = None
        if lab_rel is not None:
            label = _rel(root, lab_rel)
            if not label.is_file():
                raise LayoutError(f"{root}: label {lab_rel} listed in dataset.json is missing")
        yield Case(
            case_id=_case_id(img, ending),
            task=info["name"],
            image=image,
            label=label,
            split=split,
            meta={"labels": info["labels"], "channels": info["channels"], "layout": "msd"},
        )


# --------------------------------------------------------------------------- nnU-Net v2
def iter_nnunet(root: Union[str, os.PathLike], split: Literal["train", "test"] = "train") -> Iterator[Case]:
    """Cases of an nnU-Net v2 raw dataset (``Dataset001_Name``): per-channel image files ``_XXXX``."""
    root = Path(root)
    info = read_dataset_json(root)
    ending = info["file_ending"]
    n_chan = len(info["channels"]) or 1
    meta = {"labels": info["labels"], "channels": info["channels"], "regions": info["regions"],
            "layout": "nnunet_v2"}
    explicit = info["raw"].get("dataset")
    if split == "train" and isinstance(explicit, dict):
        for cid, entry in sorted(explicit.items(), key=lambda kv: natural_key(kv[0])):
            images = [_rel(root, p) for p in entry.get("images", [])]
            label = _rel(root, entry["label"]) if entry.get("label") else None
            for p in [*images, *([label] if label else [])]:
                if not p.is_file():
                    raise LayoutError(f"{root}: {p} (case {cid}, from dataset.json 'dataset') is missing")
            yield Case(cid, info["name"], images, label, split, dict(meta))
        return
    img_dir = root / ("imagesTr" if split == "train" else "imagesTs")
    lab_dir = root / ("labelsTr" if split == "train" else "labelsTs")
    if not img_dir.is_dir():
        if split == "test":
            return
        raise LayoutError(f"{root}: no {img_dir.name}/ folder")
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(ending) + "$")
    groups: Dict[str, Dict[int, Path]] = defaultdict(dict)
    for p in img_dir.iterdir():
        if not (_visible(p) and p.is_file()):
            continue
        m = pattern.match(p.name)
        if m is None:
            if p.name.endswith(ending):
                raise LayoutError(f"{p}: nnU-Net v2 images need a channel suffix, e.g. "
                                  f"{_case_id(p, ending)}_0000{ending}")
            continue
        groups[m["case"]][int(m["ch"])] = p
    for cid in sorted(groups, key=natural_key):
        chans = groups[cid]
        want = list(range(n_chan))
        if sorted(chans) != want:
            raise LayoutError(f"{root}: case {cid} has channels {sorted(chans)}, dataset.json declares {want}")
        label = lab_dir / f"{cid}{ending}"
        if split == "train" and not label.is_file():
            raise LayoutError(f"{root}: case {cid} has no label {lab_dir.name}/{label.name}")
        yield Case(cid, info["name"], [chans[i] for i in want], label if label.is_file() else None, split,
                   dict(meta))


# --------------------------------------------------------------------------- SAMed-2 PNG slices
_TASK_RE = re.compile(r"^(?P<object>.+)_(?P<modality>[^_]+)_(?P<id>[^_]+)$")
_SLICE_RE = re.compile(r"^(?P<volume>.+?)[_-]slice[_-]?(?P<index>\d+)$", re.I)


def _task_dirs(root: Path, tasks: Optional[Sequence[str]]) -> List[Path]:
    found = sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)
                    and (p / "image").is_dir() and (p / "mask").is_dir()), key=lambda p: natural_key(p.name))
    if tasks is not None:
        names = {p.name for p in found}
        unknown = [t for t in tasks if t not in names]
        if unknown:
            raise LayoutError(f"{root}: unknown task(s) {unknown}; found {sorted(names)}")
        found = [p for p in found if p.name in set(tasks)]
    return found


def _read_list(path: Path) -> List[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


def _resolve_entry(root: Path, task: Path, entry: str) -> Optional[Path]:
    e = entry[2:] if entry.startswith("./") else entry
    parts = Path(e).parts
    if len(parts) >= 3 and parts[0] == task.name:
        return root / e
    if len(parts) >= 3:
        return None  # another task's entry (root-level list)
    if len(parts) == 2:
        return task / e
    name = parts[0] if Path(parts[0]).suffix else parts[0] + ".png"
    return task / "image" / name


def iter_samed2(
    root: Union[str, os.PathLike],
    split: Optional[Split] = "train",
    *,
    tasks: Optional[Sequence[str]] = None,
) -> Iterator[Case]:
    """Per-slice cases of a SAMed-2 / MedBank PNG layout.

    ``split=None`` yields every image in ``image/`` (no list files needed).
    Each case's ``meta`` holds ``object``, ``modality``, ``source`` (parsed
    from ``Object_Modality_ID``), ``volume_id`` and ``slice_index`` (from
    ``..._slice_NNN``; None for 2D datasets).  Masks are read by
    ``load_label()`` keeping palette indices (see :func:`read_png_mask`).
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    task_dirs = _task_dirs(root, tasks)
    if not task_dirs:
        raise LayoutError(f"{root}: no Object_Modality_ID/{{image,mask}}/ task folders found")
    for task in task_dirs:
        if split is None:
            images = sorted((p for p in (task / "image").iterdir() if p.is_file() and _visible(p)),
                            key=lambda p: natural_key(p.name))
        else:
            list_file = task / f"{split}.txt"
            if list_file.is_file():
                entries = _read_list(list_file)
            elif (root / f"{split}.txt").is_file():
                entries = _read_list(root / f"{split}.txt")
            else:
                raise LayoutError(f"{task}: no {split}.txt (in the task folder or at {root}); pass split=None "
                                  "to use every image")
            images = []
            for entry in entries:
                p = _resolve_entry(root, task, entry)
                if p is None:
                    continue
                if not p.is_file():
                    raise LayoutError(f"{task.name}/{split}.txt lists {entry!r} but {p} does not exist")
                images.append(p)
        m = _TASK_RE.match(task.name)
        tmeta = ({"object": m["object"], "modality": m["modality"], "source": m["id"]} if m
                 else {"object": task.name, "modality": None, "source": None})
        for img in images:
            mask = task / "mask" / img.name
            if not mask.is_file():
                alt = [q for q in (task / "mask").glob(img.stem + ".*")]
                if not alt:
                    raise LayoutError(f"{task.name}: no mask for {img.name} in {task.name}/mask/")
                mask = alt[0]
            sm = _SLICE_RE.match(img.stem)
            yield Case(
                case_id=img.stem,
                task=task.name,
                image=img,
                label=mask,
                split=split,
                meta={**tmeta, "volume_id": sm["volume"] if sm else img.stem,
                      "slice_index": int(sm["index"]) if sm else None, "png_mask": True, "layout": "samed2"},
            )


def group_slices(cases: Sequence[Case]) -> Dict[Tuple[str, str], List[Case]]:
    """Group per-slice cases by (task, volume_id), each list sorted by slice index."""
    out: Dict[Tuple[str, str], List[Case]] = defaultdict(list)
    for c in cases:
        out[(c.task, str(c.meta.get("volume_id", c.case_id)))].append(c)
    for key in out:
        out[key].sort(key=lambda c: (c.meta.get("slice_index") is None, c.meta.get("slice_index") or 0))
    return dict(out)


# --------------------------------------------------------------------------- CVPR 2025 npz
def _npz_arrays(path: Path, meta: Dict[str, Any]) -> Tuple[np.ndarray, Tuple[float, float, float]]:
    with np.load(path, allow_pickle=False) as z:
        imgs = np.asarray(z[meta.get("image_key", "imgs")])
    return imgs, tuple(meta.get("spacing") or (1.0, 1.0, 1.0))  # type: ignore[return-value]


def _npz_shape(z: Any, key: str) -> Tuple[int, ...]:
    """Shape of an array in an open npz, from its .npy header (without decompressing the data)."""
    try:
        with z.zip.open(f"{key}.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = reader(f)
        return tuple(int(s) for s in shape)
    except Exception:  # unusual npz writer: fall back to loading
        return tuple(int(s) for s in z[key].shape)


def _npz_spacing(z: Any, path: Path, order: str) -> Tuple[float, float, float]:
    if "spacing" not in z:
        warnings.warn(f"{path}: no 'spacing' key; using 1 mm", stacklevel=3)
        return (1.0, 1.0, 1.0)
    sp = np.asarray(z["spacing"], dtype=float).reshape(-1)
    if sp.size == 2:  # 2D cases store (x, y)
        sp = np.array([sp[0], sp[1], 1.0])
    if sp.size != 3 or not np.all(sp > 0):
        raise LayoutError(f"{path}: 'spacing' must hold 3 positive numbers, got {sp.tolist()}")
    if order == "zyx":
        sp = sp[::-1]
    return (float(sp[0]), float(sp[1]), float(sp[2]))


def iter_cvpr_npz(
    root_or_files: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    *,
    split: Optional[str] = None,
    gts_dir: Union[str, os.PathLike, None] = None,
    spacing_order: Literal["xyz", "zyx"] = "xyz",
    allow_pickle: bool = False,
) -> Iterator[Case]:
    """Cases of CVPR 2025 challenge ``.npz`` files (a folder, searched recursively, or a list of files).

    ``gts_dir`` holds separate ground-truth npz files of the same names (as in
    the validation set).  ``boxes`` are pickled Python objects: they are only
    loaded with ``allow_pickle=True`` (trusted files only); otherwise a
    warning says they were skipped.  The task name is the parent folder.
    """
    if isinstance(root_or_files, (str, os.PathLike)):
        root = Path(root_or_files)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted((p for p in root.rglob("*.npz") if _visible(p)), key=lambda p: natural_key(str(p)))
        else:
            raise LayoutError(f"{root}: no such file or folder")
    else:
        files = [Path(f) for f in root_or_files]
    if spacing_order not in ("xyz", "zyx"):
        raise ValueError(f"spacing_order must be 'xyz' or 'zyx', got {spacing_order!r}")
    skipped_boxes = 0
    for path in files:
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LayoutError(f"{path}: not a readable .npz ({exc})") from exc
        with z:
            keys = set(z.files)
            if "imgs" not in keys:
                raise LayoutError(f"{path}: no 'imgs' key (keys: {sorted(keys)})")
            shape = _npz_shape(z, "imgs")
            spacing = _npz_spacing(z, path, spacing_order)
            has_gts = "gts" in keys
        label: Optional[Path] = path if has_gts else None
        if gts_dir is not None and (Path(gts_dir) / path.name).is_file():
            label = Path(gts_dir) / path.name
        meta: Dict[str, Any] = {"npz": True, "spacing": spacing, "shape": tuple(int(s) for s in shape),
                                "image_key": "imgs", "label_key": "gts", "layout": "cvpr_npz"}
        if "boxes" in keys:
            if allow_pickle:
                with np.load(path, allow_pickle=True) as zp:
                    meta["boxes"] = [dict(b) for b in np.asarray(zp["boxes"]).reshape(-1).tolist()]
            else:
                skipped_boxes += 1
        yield Case(path.stem, path.parent.name, path, label, split, meta)
    if skipped_boxes:
        warnings.warn(f"{skipped_boxes} npz file(s) have 'boxes' (pickled objects); pass allow_pickle=True "
                      "for trusted files to load them", stacklevel=2)


def cvpr_boxes_to_prompts(boxes: Sequence[Dict[str, Any]], label_ids: Optional[Sequence[int]] = None) -> List[Any]:
    """CVPR 2025 box dicts -> :class:`medmem.io.ObjectPrompts` with one ``box3d`` each.

    Box i belongs to the i-th non-zero label of the ground truth (``label_ids``,
    default 1, 2, ...); coordinates are inclusive voxel indices on axis 0.
    """
    from ..io.prompts import Box3DPrompt, ObjectPrompts

    ids = list(label_ids) if label_ids is not None else list(range(1, len(boxes) + 1))
    if len(ids) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(ids)} label ids")
    out = []
    for obj, b in zip(ids, boxes, strict=True):
        try:
            z0, z1 = int(b["z_min"]), int(b["z_max"])
            zmid = int(b.get("z_mid", (z0 + z1) // 2))
            box = (float(b["z_mid_x_min"]), float(b["z_mid_y_min"]), float(b["z_mid_x_max"]), float(b["z_mid_y_max"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"box for label {obj} lacks a key or value: {exc}") from None
        out.append(ObjectPrompts(int(obj), [Box3DPrompt(zmid, (z0, z1), box)]))
    return out


# --------------------------------------------------------------------------- detection
def detect_layout(root: Union[str, os.PathLike]) -> str:
    """"msd", "nnunet_v2", "samed2" or "cvpr_npz" for a dataset folder (LayoutError if none fits)."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        info = read_dataset_json(root)
        if info["format"] == "msd" or "training" in info["raw"]:
            return "msd"
        return "nnunet_v2"
    if root.is_dir():
        if _task_dirs(root, None):
            return "samed2"
        if next(root.rglob("*.npz"), None) is not None:
            return "cvpr_npz"
    raise LayoutError(f"{root}: not an MSD / nnU-Net / SAMed-2 / CVPR-npz dataset folder")


def iter_cases(root: Union[str, os.PathLike], split: Optional[str] = "train", **kwargs: Any) -> Iterator[Case]:
    """Cases of any supported layout under ``root`` (see :func:`detect_layout`)."""
    layout = detect_layout(root)
    if layout == "msd":
        return iter_msd(root, split or "train")  # type: ignore[arg-type]
    if layout == "nnunet_v2":
        return iter_nnunet(root, split or "train")  # type: ignore[arg-type]
    if layout == "samed2":
        return iter_samed2(root, split, **kwargs)  # type: ignore[arg-type]
    return iter_cvpr_npz(root, split=split, **kwargs)
