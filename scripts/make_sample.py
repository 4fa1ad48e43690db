#!/usr/bin/env python
"""Build medmem's bundled sample (MNI ICBM152 2009a T1 template + brain mask) from the nilearn wheel.

One-off, offline once the wheel is on disk; nilearn is *not* a medmem dependency:

    pip download nilearn --no-deps -d /tmp/nilearn_wheel
    python scripts/make_sample.py /tmp/nilearn_wheel/nilearn-*.whl

The wheel holds the 1 mm MNI ICBM152 2009a (symmetric, "converted" to uint8)
T1, grey-matter and white-matter maps in ``nilearn/datasets/data/``.  This
script writes to ``src/medmem/assets/``:

* ``mni152_t1.nii.gz``: the T1 template block-averaged 2x2x2 (1 mm -> 2 mm);
  ``SimpleITK.BinShrink`` moves the origin to the centre of the first block,
  so world coordinates stay right.
* ``mni152_brain_mask.nii.gz``: on the 1 mm grid, ``GM + WM >= threshold``
  (probabilities, default 0.5), holes filled in 3D (this closes the
  ventricles, i.e. the CSF inside the brain) and slice by slice, the largest
  26-connected component kept; then block-averaged like the T1 and
  thresholded at 0.5.  uint8, 1 = brain.
* ``LICENSE_MNI152.txt``: the MNI copyright and permission notice.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

MEMBERS = {
    "t1": "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

LICENSE_TEXT = """\
MNI ICBM152 non-linear symmetric template, 2009a release
========================================================

Files: mni152_t1.nii.gz, mni152_brain_mask.nii.gz (in this folder)

Source: the ICBM 2009a Nonlinear Symmetric template of the McConnell Brain
Imaging Centre, Montreal Neurological Institute, McGill University
(https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009), as
redistributed in the nilearn wheel (nilearn/datasets/data/
mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz).

Modifications by medmem (scripts/make_sample.py): the T1 template was
block-averaged from 1 mm to 2 mm; the brain mask was derived from the grey-
and white-matter probability maps (GM + WM >= 0.5, closed with a ~3 mm
element, holes filled, largest connected component, block-averaged to 2 mm
and thresholded at 0.5).

The original copyright and permission notice, which must appear in all copies:

Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University. Permission to use, copy,
modify, and distribute this software and its documentation for any purpose
and without fee is hereby granted, provided that the above copyright notice
appear in all copies. The authors and McGill University make no
representations about the suitability of this software for any purpose. It
is provided "as is" without express or implied warranty. The authors are not
responsible for any data loss, equipment damage, property loss, or injury to
subjects or patients resulting from the use or misuse of this software
package.

References:
  VS Fonov, AC Evans, K Botteron, CR Almli, RC McKinstry, DL Collins and
  BDCG, Unbiased average age-appropriate atlases for pediatric studies,
  NeuroImage 54(1), 2011, doi:10.1016/j.neuroimage.2010.07.033.
  VS Fonov, AC Evans, RC McKinstry, CR Almli and DL Collins, Unbiased
  nonlinear average age-appropriate brain templates from birth to adulthood,
  NeuroImage 47(S1), 2009, S102, doi:10.1016/S1053-8119(09)70884-5.
  DL Collins, AP Zijdenbos, WFC Baare and AC Evans, ANIMAL+INSECT: Improved
  Cortical Structure Segmentation, IPMI 1999, LNCS 1613, 210-223.
"""


def brain_mask(gm: np.ndarray, wm: np.ndarray, threshold: float, closing: int = 3) -> np.ndarray:
    """Binary brain mask (Z, Y, X) from GM and WM probability maps in [0, 1]."""
    mask = (gm + wm) >= threshold
    if closing > 0:  # bridge sulci and the interhemispheric fissure (CSF between tissue)
        ball = ndimage.generate_binary_structure(3, 1)
        padded = np.pad(mask, closing + 1)
        padded = ndimage.binary_closing(padded, structure=ball, iterations=closing)
        mask = padded[(slice(closing + 1, -closing - 1),) * 3]
    mask = ndimage.binary_fill_holes(mask)
    for z in range(mask.shape[0]):  # close slice-wise pockets that touch nothing 3D-enclosed
        mask[z] = ndimage.binary_fill_holes(mask[z])
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel", type=Path, help="path to a nilearn-*.whl (from `pip download nilearn --no-deps`)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/medmem/assets")
    ap.add_argument("--factor", type=int, default=2, help="block-averaging factor (1 mm -> factor mm)")
    ap.add_argument("--threshold", type=float, default=0.5, help="GM + WM probability threshold")
    ap.add_argument("--closing", type=int, default=3, help="morphological closing iterations (1 mm voxels)")
    args = ap.parse_args(argv)

    with zipfile.ZipFile(args.wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        names = set(zf.namelist())
        missing = [m for m in MEMBERS.values() if m not in names]
        if missing:
            print(f"{args.wheel}: missing {missing}", file=sys.stderr)
            return 1
        imgs = {}
        for key, member in MEMBERS.items():
            target = Path(tmp) / Path(member).name
            target.write_bytes(zf.read(member))
            imgs[key] = sitk.ReadImage(str(target))

    t1 = imgs["t1"]
    gm = sitk.GetArrayFromImage(imgs["gm"]).astype(np.float32) / 255.0
    wm = sitk.GetArrayFromImage(imgs["wm"]).astype(np.float32) / 255.0
    mask = brain_mask(gm, wm, args.threshold, args.closing)

    f = [args.factor] * 3
    t1_small = sitk.BinShrink(sitk.Cast(t1, sitk.sitkFloat32), f)
    t1_small = sitk.Cast(sitk.Round(t1_small), sitk.sitkUInt8)
    mask_img = sitk.GetImageFromArray(mask.astype(np.float32))
    mask_img.CopyInformation(t1)
    mask_small = sitk.BinShrink(mask_img, f) >= 0.5
    mask_small = sitk.Cast(mask_small, sitk.sitkUInt8)
    mask_small.CopyInformation(t1_small)

    args.out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(t1_small, str(args.out / "mni152_t1.nii.gz"), True)
    sitk.WriteImage(mask_small, str(args.out / "mni152_brain_mask.nii.gz"), True)
    source = "as\nredistributed in the nilearn wheel"
    (args.out / "LICENSE_MNI152.txt").write_text(LICENSE_TEXT.replace(source, f"{source} {args.wheel.name}", 1))

    vox_ml = float(np.prod(t1_small.GetSpacing())) / 1000.0
    n = int(sitk.GetArrayViewFromImage(mask_small).sum())
    print(f"T1   {t1_small.GetSize()} spacing {t1_small.GetSpacing()} origin {t1_small.GetOrigin()}")
    print(f"mask {n} voxels = {n * vox_ml:.0f} ml (1 mm: {int(mask.sum()) / 1000.0:.0f} ml)")
    for name in ("mni152_t1.nii.gz", "mni152_brain_mask.nii.gz"):
        print(f"{name}: {(args.out / name).stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
