"""MedBank-mini: a small synthetic multi-modality segmentation data set.

25 tasks (`medmem.data.synth_tasks.TASKS`) in 7 modality styles, 2D and 3D, deterministic
per seed. `generate` writes::

    OUT/manifest.json
    OUT/<task>/images/<case>.nii.gz | .png      image
    OUT/<task>/labels/<case>.nii.gz | .png      clean label map (uint8 ids, 0 = background)
    OUT/<task>/labels_noisy/<case>...           noisy label (only when noise > 0 and the
                                                case was corrupted)

3D cases are NIfTI (SimpleITK; array (Z, Y, X), spacing in the header), 2D cases PNG
(grayscale or RGB image; the mask's pixel values are the label ids). ``manifest.json``::

    {"name": "MedBank-mini", "format_version": 1, "seed", "size", "noise",
     "spacing_order": "itk_xyz", "tasks": [{"name", "modality", "style", "dims", "channels",
       "axis0", "labels": {"1": "liver", ...}, "description", "traits",
       "cases": [{"id", "split", "image", "label", "label_noisy", "noise",
                  "shape", "spacing"}]}]}

Paths are relative to the manifest; ``shape`` is the array shape; ``spacing`` is in
ITK (x, y[, z]) order in mm, as medmem's ``Volume``; ``label_noisy`` is null for
uncorrupted cases (their noisy label is the clean one), ``noise`` describes the
corruption (`medmem.data.synth_noise`).
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from .synth_noise import corrupt_label
from .synth_tasks import STYLES, TASKS, TaskSpec

DEFAULT_CASES_PER_TASK = 8
FORMAT_VERSION = 1


@dataclass
class SynthCase:
    """One loaded case. ``image``: (Z, Y, X), (H, W) or (H, W, 3); ``label`` and
    ``label_noisy`` (the noisy label, equal to ``label`` for uncorrupted cases, None if the
    set was generated without noise): uint8 of the image's spatial shape; ``spacing``:
    ITK (x, y[, z]) order, mm."""

    id: str
    task: str
    modality: str
    style: str
    dims: int
    split: str
    image: np.ndarray
    label: np.ndarray
    label_noisy: Optional[np.ndarray]
    spacing: Tuple[float, ...]
    labels: Dict[int, str]
    noise: Optional[dict]
    axis0: str = "z"

    @property
    def spacing_array_order(self) -> Tuple[float, ...]:
        """Spacing in array-axis order ((z,) y, x), as `medmem.eval.metrics` expects."""
        return tuple(reversed(self.spacing))


def _task_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def split_counts(n: int) -> Tuple[int, int, int]:
    """(train, val, test) case counts: 15 % val and 15 % test, at least one of each when
    n >= 3; n = 2 gives (1, 0, 1), n = 1 gives (1, 0, 0)."""
    if n < 1:
        raise ValueError(f"cases_per_task must be >= 1, got {n}")
    if n == 1:
        return 1, 0, 0
    if n == 2:
        return 1, 0, 1
    n_val = max(1, int(round(0.15 * n)))
    n_test = max(1, int(round(0.15 * n)))
    return n - n_val - n_test, n_val, n_test


def _geometry(spec: TaskSpec, size: int) -> Tuple[int, Tuple[float, ...]]:
    scale = 128.0 / size
    n = max(4, int(round(spec.slices * size / 128))) if spec.dims == 3 else 0
    return n, tuple(round(s * scale, 6) for s in spec.spacing)


def make_case(task: str, index: int, seed: int = 0,
              size: int = 128) -> Tuple[np.ndarray, np.ndarray, Tuple[float, ...]]:
    """Build one case in memory: (image, label, spacing ITK order). Deterministic in
    (task, index, seed, size), independent of the other tasks or cases generated."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {sorted(TASKS)}")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    spec = TASKS[task]
    rng = np.random.default_rng([int(seed), _task_key(task), int(index)])
    n, spacing = _geometry(spec, size)
    image, label = spec.builder(rng, int(size), n)
    return image, label.astype(np.uint8), spacing


def _write_nifti(arr: np.ndarray, spacing: Sequence[float], path: Path) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([0.0] * arr.ndim)
    sitk.WriteImage(img, str(path), True)


def _write_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(arr)).save(str(path), optimize=False)


def _write(arr: np.ndarray, spec: TaskSpec, spacing, path_noext: Path) -> Path:
    if spec.dims == 3:
        p = path_noext.with_name(path_noext.name + ".nii.gz")
        _write_nifti(arr, spacing, p)
    else:
        p = path_noext.with_name(path_noext.name + ".png")
        _write_png(arr, p)
    return p


def generate(
    out_dir: Union[str, Path],
    seed: int = 0,
    size: int = 128,
    noise: float = 0.0,
    cases_per_task: int = DEFAULT_CASES_PER_TASK,
    tasks: Optional[Sequence[str]] = None,
    progress: bool = False,
) -> Path:
    """Write MedBank-mini to ``out_dir`` and return the path of ``manifest.json``.

    ``noise``: fraction of each task's cases whose label gets a corrupted copy in
    ``labels_noisy/`` (exactly ``round(noise * cases_per_task)`` cases per task, chosen
    by the seed). ``tasks``: a subset of task names (default all).
    """
    if not (0.0 <= float(noise) <= 1.0):
        raise ValueError(f"noise must be a rate in [0, 1], got {noise}")
    names = list(TASKS) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; tasks: {sorted(TASKS)}")
    n_tr, n_va, n_te = split_counts(int(cases_per_task))
    splits = ["train"] * n_tr + ["val"] * n_va + ["test"] * n_te
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    task_entries = []
    for name in names:
        spec = TASKS[name]
        tdir = out / name
        (tdir / "images").mkdir(parents=True, exist_ok=True)
        (tdir / "labels").mkdir(parents=True, exist_ok=True)
        n_noisy = int(round(float(noise) * len(splits)))
        noise_rng = np.random.default_rng([int(seed), _task_key(name), 1 << 30])
        noisy_idx = set(int(i) for i in noise_rng.permutation(len(splits))[:n_noisy])
        cases = []
        for i, split in enumerate(splits):
            cid = f"{name}_{i:03d}"
            image, label, spacing = make_case(name, i, seed, size)
            img_p = _write(image, spec, spacing, tdir / "images" / cid)
            lab_p = _write(label, spec, spacing, tdir / "labels" / cid)
            entry = {"id": cid, "split": split, "image": img_p.relative_to(out).as_posix(),
                     "label": lab_p.relative_to(out).as_posix(), "label_noisy": None, "noise": None,
                     "shape": list(image.shape), "spacing": list(spacing)}
            if i in noisy_idx:
                (tdir / "labels_noisy").mkdir(exist_ok=True)
                rng = np.random.default_rng([int(seed), _task_key(name), int(i), 7])
                noisy, info = corrupt_label(label, rng, spec.dims)
                noisy_p = _write(noisy, spec, spacing, tdir / "labels_noisy" / cid)
                entry["label_noisy"] = noisy_p.relative_to(out).as_posix()
                entry["noise"] = info
            cases.append(entry)
        task_entries.append({
            "name": name, "modality": spec.modality, "style": spec.style, "dims": spec.dims,
            "channels": spec.channels, "axis0": spec.axis0 if spec.dims == 3 else None,
            "labels": {str(k): v for k, v in spec.labels.items()}, "description": spec.description,
            "traits": list(spec.traits), "cases": cases,
        })
        if progress:
            print(f"{name}: {len(cases)} cases ({time.perf_counter() - t0:.1f} s)", flush=True)
    manifest = {
        "name": "MedBank-mini", "format_version": FORMAT_VERSION, "generator": "medmem.data.synth",
        "seed": int(seed), "size": int(size), "noise": float(noise), "cases_per_task": int(cases_per_task),
        "spacing_order": "itk_xyz", "array_order": "3D (Z, Y, X); 2D (H, W) or (H, W, 3)",
        "styles": {k: list(v) for k, v in STYLES.items()}, "tasks": task_entries,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def read_manifest(path: Union[str, Path]) -> dict:
    """The manifest dict (``path`` may be the manifest file or its directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise ValueError(f"no MedBank-mini manifest at {p}")
    data = json.loads(p.read_text())
    if data.get("name") != "MedBank-mini" or "tasks" not in data:
        raise ValueError(f"{p} is not a MedBank-mini manifest")
    return data


def _read_array(path: Path) -> Tuple[np.ndarray, Optional[Tuple[float, ...]]]:
    if path.name.endswith(".nii.gz") or path.suffix == ".nii":
        import SimpleITK as sitk

        img = sitk.ReadImage(str(path))
        return sitk.GetArrayFromImage(img), tuple(float(s) for s in img.GetSpacing())
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im), None


def load_manifest(
    path: Union[str, Path],
    split: Union[str, Sequence[str], None] = None,
    task: Union[str, Sequence[str], None] = None,
) -> Iterator[SynthCase]:
    """Yield the cases of a generated set, arrays loaded lazily one case at a time.

    ``split``/``task`` filter by name (a string or a list of strings). Spacing comes
    from the NIfTI header for 3D cases, from the manifest for 2D cases (ITK order).
    """
    p = Path(path)
    root = p if p.is_dir() else p.parent
    data = read_manifest(p)
    splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)
    tasks = {task} if isinstance(task, str) else (set(task) if task is not None else None)
    noisy_set = float(data.get("noise", 0.0)) > 0
    for t in data["tasks"]:
        if tasks is not None and t["name"] not in tasks:
            continue
        labels = {int(k): v for k, v in t["labels"].items()}
        for c in t["cases"]:
            if splits is not None and c["split"] not in splits:
                continue
            image, sp = _read_array(root / c["image"])
            label, _ = _read_array(root / c["label"])
            noisy = None
            if c.get("label_noisy"):
                noisy, _ = _read_array(root / c["label_noisy"])
            elif noisy_set:
                noisy = label
            yield SynthCase(
                id=c["id"], task=t["name"], modality=t["modality"], style=t["style"], dims=int(t["dims"]),
                split=c["split"], image=image, label=label.astype(np.uint8),
                label_noisy=None if noisy is None else noisy.astype(np.uint8),
                spacing=tuple(sp if sp is not None else c["spacing"]), labels=labels, noise=c.get("noise"),
                axis0=t.get("axis0") or "z",
            )
