"""Task definitions of MedBank-mini: 25 segmentation tasks over 7 modality styles.

Each builder is ``f(rng, size, n_slices) -> (image, label)`` with array-axis order:
3D (D, H, W), 2D grayscale (H, W), 2D RGB (H, W, 3); ``label`` is uint8 with the task's
label ids (0 = background). Coordinates inside a builder are normalised to [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import numpy as np
from scipy import ndimage

from . import synth_render as R
from .synth_shapes import Grid, blob, ellipsoid, make_grid, polyline_mask, smooth_noise, split_touching, tube

Builder = Callable[[np.random.Generator, int, int], Tuple[np.ndarray, np.ndarray]]

#: The 7 rendering styles and the modalities they cover.
STYLES: Dict[str, Tuple[str, ...]] = {
    "ct": ("ct",),
    "mri": ("mri",),
    "xray": ("xray",),
    "ultrasound": ("ultrasound",),
    "endoscopy": ("endoscopy",),
    "dermoscopy_fundus": ("dermoscopy", "fundus"),
    "microscopy": ("microscopy",),
}


@dataclass(frozen=True)
class TaskSpec:
    """One task: ``spacing`` in ITK (x, y[, z]) order, mm, at ``size`` 128 (scaled with size)."""

    name: str
    modality: str
    style: str
    dims: int
    labels: Dict[int, str]
    spacing: Tuple[float, ...]
    builder: Builder
    description: str
    slices: int = 0  # 3D: number of slices at size 128
    channels: int = 1
    axis0: str = "z"  # 3D: "z" (slices) or "t" (frames of a cine)
    traits: Tuple[str, ...] = field(default_factory=tuple)


def _pick_inside(mask: np.ndarray, rng: np.random.Generator, grid: Grid) -> Tuple[float, ...]:
    """Normalised coordinates of a random voxel inside ``mask`` (eroded if possible)."""
    core = ndimage.binary_erosion(mask, iterations=2)
    idx = np.argwhere(core if core.any() else mask)
    if len(idx) == 0:
        return tuple(0.0 for _ in grid.shape)
    p = idx[rng.integers(len(idx))]
    return tuple(float(c[tuple(p)]) for c in grid.coords)


def _body(grid: Grid, rng, ry=0.72, rx=0.9) -> np.ndarray:
    g = grid
    f = ((g.coords[-2] + 0.05) / ry) ** 2 + (g.coords[-1] / rx) ** 2
    return f + 0.06 * smooth_noise(g.shape, rng, 4) < 1.0


def _spine(grid: Grid, y=0.45, r=0.12) -> np.ndarray:
    return (grid.coords[-2] - y) ** 2 + grid.coords[-1] ** 2 < r * r


# ============================================================================ CT (3D)
def ct_liver_tumor(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.05)
    body = _body(g, rng)
    liver = blob(g, (rng.uniform(-0.1, 0.1), -0.05, -0.38), (0.85, 0.42, 0.4), rng, 0.18) & body
    tumors = np.zeros_like(liver)
    for _ in range(int(rng.integers(1, 4))):
        c = _pick_inside(liver, rng, g)
        r = rng.uniform(0.06, 0.13)
        tumors |= blob(g, c, (rng.uniform(0.15, 0.35), r, r * rng.uniform(0.8, 1.3)), rng, 0.25)
    tumors &= ndimage.binary_dilation(liver, iterations=1)
    spine = _spine(g) & body
    hu = R.paint(g.shape, -1000.0, [(body, 35.0, 12.0), (spine, 550.0, 80.0), (liver, 62.0, 8.0),
                                   (tumors, 22.0, 10.0)], rng)
    label = np.zeros(g.shape, np.uint8)
    label[liver] = 1
    label[tumors] = 2
    return R.ct_finish(hu, rng), label


def ct_kidney(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.04)
    body = _body(g, rng)
    kidneys, sinus = np.zeros(g.shape, bool), np.zeros(g.shape, bool)
    zc = rng.uniform(-0.15, 0.15)
    for side in (-1, 1):
        c = (zc + rng.uniform(-0.1, 0.1), 0.2 + rng.uniform(-0.05, 0.05), side * rng.uniform(0.38, 0.48))
        k = blob(g, c, (0.55, 0.17, 0.12), rng, 0.08, angle=side * 0.4)
        s = ellipsoid(g, (c[0], c[1], c[2] - side * 0.07), (0.3, 0.07, 0.07)) < 0  # renal sinus: a hole
        kidneys |= k & ~s
        sinus |= k & s
    kidneys &= body
    hu = R.paint(g.shape, -1000.0, [(body, 30.0, 15.0), (_spine(g) & body, 600.0, 80.0),
                                   (kidneys, 160.0, 12.0), (sinus, -60.0, 10.0)], rng)
    return R.ct_finish(hu, rng), kidneys.astype(np.uint8)


def ct_aorta(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.02)
    body = _body(g, rng)
    z = np.linspace(-1, 1, n)
    y0, x0 = 0.2 + 0.05 * np.sin(2 * z + rng.uniform(0, 6)), -0.08 + 0.06 * np.sin(1.5 * z + rng.uniform(0, 6))
    r = 0.085 + 0.01 * np.cos(z * 2)
    split = rng.uniform(0.3, 0.6)  # bifurcation into the two iliac arteries below this z
    t = np.clip((z - split) / (1 - split), 0, None)
    main = tube(g, np.stack([y0, x0], 1), np.where(t > 0, 0, r))
    left = tube(g, np.stack([y0 + 0.05 * t, x0 - 0.35 * t], 1), np.where(t > 0, r * 0.75, 0))
    right = tube(g, np.stack([y0 + 0.05 * t, x0 + 0.35 * t], 1), np.where(t > 0, r * 0.75, 0))
    aorta = (main | left | right) & body
    ivc = tube(g, np.stack([y0 - 0.02, x0 + 0.2], 1), 0.08) & body & ~aorta
    hu = R.paint(g.shape, -1000.0, [(body, 35.0, 15.0), (_spine(g, 0.5), 600.0, 80.0), (ivc, 90.0, 5.0),
                                   (aorta, 260.0, 15.0)], rng)
    return R.ct_finish(hu, rng), aorta.astype(np.uint8)


def ct_lung_nodule(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.04)
    body = _body(g, rng, 0.75, 0.92)
    lungs = np.zeros(g.shape, bool)
    for side in (-1, 1):
        lungs |= blob(g, (0.0, -0.05, side * 0.45), (1.1, 0.55, 0.33), rng, 0.1)
    lungs &= body
    heart = blob(g, (0.3, 0.05, 0.1), (0.6, 0.3, 0.3), rng, 0.05) & body
    lungs &= ~heart
    nodules = np.zeros(g.shape, bool)
    for _ in range(int(rng.integers(2, 5))):
        c = _pick_inside(lungs, rng, g)
        r = rng.uniform(0.035, 0.07)
        nodules |= blob(g, c, (rng.uniform(0.1, 0.25), r, r), rng, 0.1)
    nodules &= lungs
    vessels = (smooth_noise(g.shape, rng, 14) > 0.55) & lungs & ~nodules  # distractors
    hu = R.paint(g.shape, -1000.0, [(body, 30.0, 15.0), (lungs, -850.0, 30.0), (heart, 45.0, 8.0),
                                   (vessels, -500.0, 60.0), (nodules, 25.0, 20.0)], rng)
    label = np.zeros(g.shape, np.uint8)
    label[lungs & ~nodules] = 1
    label[nodules] = 2
    return R.ct_finish(hu, rng), label


def ct_abdomen_multi(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.05)
    body = _body(g, rng)
    centers = [(0.0, 0.0, 0.55), (rng.uniform(-0.3, 0.0), -0.3, 0.2), (0.1, 0.08, 0.15)]
    spleen = blob(g, centers[0], (0.6, 0.25, 0.2), rng, 0.12)
    stomach = blob(g, centers[1], (0.55, 0.22, 0.3), rng, 0.12)
    pancreas = blob(g, centers[2], (0.35, 0.08, 0.35), rng, 0.15, angle=-0.3)
    spleen, stomach, pancreas = split_touching([spleen, stomach, pancreas], centers, g)
    spleen, stomach, pancreas = spleen & body, stomach & body, pancreas & body
    gas = blob(g, (centers[1][0], -0.38, 0.2), (0.3, 0.08, 0.15), rng, 0.1) & stomach
    hu = R.paint(g.shape, -1000.0, [(body, 30.0, 15.0), (_spine(g) & body, 600.0, 80.0), (spleen, 58.0, 6.0),
                                   (stomach, 25.0, 10.0), (gas, -900.0, 20.0), (pancreas, 45.0, 12.0)], rng)
    label = np.zeros(g.shape, np.uint8)
    label[spleen] = 1
    label[stomach] = 2
    label[pancreas] = 3
    return R.ct_finish(hu, rng), label


def ct_vertebrae(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.02)
    body = _body(g, rng)
    verts = np.zeros(g.shape, bool)
    period = rng.uniform(0.45, 0.6)
    offset = rng.uniform(0, period)
    for zc in np.arange(-1.2 + offset, 1.3, period):  # vertebral bodies separated by discs
        verts |= blob(g, (zc, 0.35, 0.0), (period * 0.38, 0.13, 0.15), rng, 0.05)
    verts &= body
    cortex = verts & ~ndimage.binary_erosion(verts, iterations=2)
    hu = R.paint(g.shape, -1000.0, [(body, 35.0, 15.0), (verts, 250.0, 60.0), (cortex, 700.0, 80.0)], rng)
    return R.ct_finish(hu, rng), verts.astype(np.uint8)


# ============================================================================ MRI (3D)
def _head(g: Grid, rng):
    head = blob(g, (0.0, 0.0, 0.0), (1.6, 0.85, 0.7), rng, 0.03)
    brain = blob(g, (0.0, 0.0, 0.0), (1.4, 0.75, 0.6), rng, 0.05)
    wm = blob(g, (0.0, 0.0, 0.0), (1.1, 0.55, 0.45), rng, 0.2) & brain
    vent = blob(g, (0.0, -0.05, 0.0), (0.5, 0.2, 0.1), rng, 0.1)
    return head, brain, wm, vent


def mri_brain_tumor(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.05)
    head, brain, wm, vent = _head(g, rng)
    c = (rng.uniform(-0.4, 0.4), rng.uniform(-0.35, 0.35), rng.choice([-1, 1]) * rng.uniform(0.2, 0.35))
    edema = blob(g, c, (0.5, 0.3, 0.25), rng, 0.3) & brain
    core = blob(g, c, (0.3, 0.14, 0.12), rng, 0.2) & edema
    img = R.paint(g.shape, 0.0, [(head, 300.0, 30.0), (brain, 420.0, 30.0), (wm, 380.0, 25.0),
                                (vent, 120.0, 10.0), (edema, 650.0, 50.0), (core, 520.0, 90.0)], rng)
    label = np.zeros(g.shape, np.uint8)
    label[edema] = 1
    label[core] = 2
    return R.mri_finish(img, rng), label


def mri_hippocampus(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.04)
    head, brain, wm, vent = _head(g, rng)
    hippo = np.zeros(g.shape, bool)
    for side in (-1, 1):
        hippo |= blob(g, (rng.uniform(-0.2, 0.2), 0.25, side * 0.3), (0.45, 0.06, 0.05), rng, 0.15,
                      angle=side * 0.5)
    hippo &= brain
    img = R.paint(g.shape, 0.0, [(head, 300.0, 30.0), (brain, 420.0, 30.0), (wm, 380.0, 25.0),
                                (vent, 120.0, 10.0), (hippo, 470.0, 15.0)], rng)
    return R.mri_finish(img, rng), hippo.astype(np.uint8)


def mri_cardiac(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.03)
    body = _body(g, rng, 0.8, 0.95)
    z = g.coords[0]
    taper = np.clip(1.15 - 0.5 * (z + 1), 0.15, 1.0)  # apex (z=+1) narrower than base
    c = (0.0, rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1))
    dy, dx = g.coords[1] - c[1], g.coords[2] - c[2]
    rr = np.sqrt(dy * dy + dx * dx) / taper + 0.03 * smooth_noise(g.shape, rng, 4)
    zin = np.abs(z) < 0.85
    lv = (rr < 0.17) & zin
    myo = (rr < 0.26) & zin & ~lv  # a ring: the label has a hole where the cavity is
    rv_dist = np.sqrt(((g.coords[1] - c[1] + 0.02) / 0.3) ** 2 + ((g.coords[2] - c[2] + 0.3) / 0.2) ** 2) / taper
    rv = (rv_dist < 1.0) & zin & (np.abs(z) < 0.7) & ~lv & ~myo
    img = R.paint(g.shape, 0.0, [(body, 350.0, 60.0), (myo, 220.0, 15.0), (lv, 800.0, 30.0),
                                (rv, 760.0, 30.0)], rng)
    label = np.zeros(g.shape, np.uint8)
    label[lv] = 1
    label[myo] = 2
    label[rv] = 3
    return R.mri_finish(img, rng, noise=22.0), label


def mri_prostate(rng, size, n):
    g = make_grid((n, size, size), rng, warp=0.04)
    body = _body(g, rng, 0.7, 0.9)
    prostate = blob(g, (rng.uniform(-0.1, 0.2), 0.05, 0.0), (0.5, 0.2, 0.25), rng, 0.12) & body
    bladder = blob(g, (-0.7, -0.15, 0.0), (0.5, 0.3, 0.3), rng, 0.08) & body & ~prostate
    rectum = blob(g, (0.0, 0.38, 0.0), (1.2, 0.1, 0.12), rng, 0.1) & body & ~prostate
    img = R.paint(g.shape, 0.0, [(body, 300.0, 50.0), (bladder, 900.0, 20.0), (rectum, 120.0, 20.0),
                                (prostate, 340.0, 45.0)], rng)
    return R.mri_finish(img, rng), prostate.astype(np.uint8)


def mri_brain(rng, size, n):
    """Whole-brain mask on a T1- (or T2-) like head, skull-stripped in about half the cases.

    The label is the brain envelope *including* what lies inside it (ventricles, sulcal CSF):
    a whole-organ target whose interior has its own distinct structures."""
    g = make_grid((n, size, size), rng, warp=0.04)
    z, y, x = g.coords
    cz = rng.uniform(-0.15, 0.05)
    radii = (rng.uniform(0.8, 0.95), rng.uniform(0.72, 0.85), rng.uniform(0.58, 0.7))
    # a brain is flatter below (temporal lobes, cerebellum) and narrower at the front
    f = ellipsoid(g, (cz, 0.0, 0.0), radii) + 0.08 * smooth_noise(g.shape, rng, 5)
    f = f + 0.12 * np.clip(-(y + 0.2), 0, None) * np.abs(x) + 0.15 * np.clip(z - cz, 0, None) ** 2
    brain = f < 0
    folds = smooth_noise(g.shape, rng, 18)  # gyri: white-matter fingers reach into the cortex
    inner = f < -0.3 + 0.12 * folds
    sulci = (np.abs(smooth_noise(g.shape, rng, 22)) < 0.1) & brain & ~inner
    sulci |= brain & ~(f < -0.03)  # a thin CSF rim between brain surface and the envelope
    fissure = (np.abs(x) < 0.025) & brain & (np.abs(y) > rng.uniform(0.15, 0.35))
    wm = inner & (smooth_noise(g.shape, rng, 10) > -0.6)
    vent = np.zeros(g.shape, bool)
    for side in (-1, 1):
        vent |= blob(g, (cz + rng.uniform(-0.1, 0.1), -0.08, side * 0.09), (0.3, 0.28, 0.06), rng, 0.1,
                     angle=side * 0.25)
    vent &= inner
    t2 = rng.random() < 0.25
    gm_v, wm_v, csf_v = (170.0, 120.0, 260.0) if t2 else (160.0, 230.0, 45.0)
    layers = []
    if rng.random() < 0.5:  # head with skull and scalp around the brain
        out1 = f < 0.12
        out2 = f < 0.25 + 0.03 * smooth_noise(g.shape, rng, 4)
        out3 = f < 0.38 + 0.04 * smooth_noise(g.shape, rng, 4)
        layers = [(out3, 190.0 if not t2 else 150.0, 20.0), (out2, 25.0, 8.0), (out1, csf_v, 10.0)]
    layers += [(brain, gm_v, 12.0), (wm, wm_v, 10.0), (sulci | fissure, csf_v, 10.0), (vent, csf_v, 8.0)]
    img = R.paint(g.shape, 0.0, layers, rng)
    return R.mri_finish(img, rng, noise=rng.uniform(4.0, 14.0), bias=0.15), brain.astype(np.uint8)


def mri_brain_cortex(rng, size, n):
    """Whole brain whose outer layer is a folded cortical ribbon, as on 1-2 mm T1 templates.

    Grey matter (darker than white matter on T1) lines the brain surface and the walls of thin sulci;
    below the cerebrum lie the temporal lobes, the cerebellum (with folia) and the brainstem, so a box on
    a low slice holds separate parts with background between them. Most cases are skull-stripped (zero
    outside the brain), the others keep CSF, skull and scalp. The label is the whole brain (cortex,
    sulci, ventricles and deep nuclei inside it included), not the background between its parts.
    Added to reproduce a failure seen on the bundled MNI152 template (a whole-brain box gave the white
    matter without the outer cortex) and designed with that template in view."""
    g = make_grid((n, size, size), rng, warp=0.04)
    z, y, x = g.coords
    scale = size / 128.0
    cz = rng.uniform(0.0, 0.08)  # the cerebrum sits high; its lower lobes and the cerebellum fill the bottom
    cereb_f = ellipsoid(g, (cz, 0.0, 0.0), (rng.uniform(0.76, 0.86), rng.uniform(0.74, 0.84), rng.uniform(0.6, 0.7)))
    cereb_f = cereb_f + 0.06 * smooth_noise(g.shape, rng, 5) + 0.12 * np.clip(-(y + 0.2), 0, None) * np.abs(x)
    z_cut = cz - rng.uniform(0.35, 0.5)  # below it only the temporal lobes are left of the cerebrum
    cerebrum = (cereb_f < 0) & (z > z_cut)
    for side in (-1, 1):
        cerebrum |= blob(g, (z_cut - 0.05, rng.uniform(-0.2, 0.0), side * rng.uniform(0.36, 0.44)),
                         (0.32, 0.36, 0.17), rng, 0.08) & (cereb_f < 0.05)
    cerebellum = blob(g, (z_cut - rng.uniform(0.15, 0.25), rng.uniform(0.42, 0.5), 0.0), (0.3, 0.26, 0.5), rng, 0.06)
    cerebellum &= ~ndimage.binary_dilation(cerebrum, iterations=max(1, int(round(1.5 * scale))))  # tentorium gap
    stem = ((y - 0.12) ** 2 + x ** 2 < rng.uniform(0.1, 0.14) ** 2) & (z < z_cut + 0.2)
    brain = cerebrum | cerebellum | stem
    # sulci: thin clefts of CSF from the surface inwards, and the interhemispheric fissure
    depth = ndimage.distance_transform_edt(brain)  # voxels to the outside
    folds = smooth_noise(g.shape, rng, int(rng.integers(16, 24)))
    sulci = (np.abs(folds) < rng.uniform(0.035, 0.06)) & (depth < rng.uniform(8.0, 14.0) * scale) & cerebrum
    sulci |= (np.abs(x) < 0.02) & cerebrum & (z > z_cut + 0.1) & (np.abs(y) > rng.uniform(0.1, 0.3))
    folia = (np.sin(np.sqrt((z - z_cut + 0.2) ** 2 + (y - 0.45) ** 2) * rng.uniform(50, 70)) > 0.55) & cerebellum
    csf = sulci | ~brain
    near_csf = ndimage.distance_transform_edt(~csf)
    ribbon = rng.uniform(2.0, 3.5) * scale
    gm = brain & ~sulci & (near_csf < ribbon)
    gm |= folia & ~sulci
    vent = np.zeros(g.shape, bool)
    nuclei = np.zeros(g.shape, bool)
    for side in (-1, 1):
        vent |= blob(g, (cz + rng.uniform(-0.1, 0.05), -0.08, side * 0.09), (0.28, 0.26, 0.05), rng, 0.1,
                     angle=side * 0.25)
        nuclei |= blob(g, (cz - rng.uniform(0.05, 0.15), rng.uniform(-0.05, 0.1), side * 0.2), (0.14, 0.16, 0.08),
                       rng, 0.1)
    vent &= cerebrum & ~gm
    nuclei &= cerebrum & ~gm & ~vent
    t2 = rng.random() < 0.25
    gm_v, wm_v, csf_v = (170.0, 120.0, 260.0) if t2 else (160.0, 230.0, 45.0)
    stripped = rng.random() < 0.6
    layers = []
    if not stripped:  # CSF, skull and scalp around the brain (and CSF between its parts)
        out = ndimage.distance_transform_edt(~brain) / scale
        layers = [(out < rng.uniform(7.0, 9.0), 190.0 if not t2 else 150.0, 20.0), (out < 5.0, 25.0, 8.0),
                  (out < 2.0, csf_v, 10.0)]
    layers += [(brain, wm_v, 10.0), (gm, gm_v, 12.0), (nuclei, 0.5 * (gm_v + wm_v), 10.0),
               (sulci, csf_v, 10.0), (vent, csf_v, 8.0)]
    img = R.paint(g.shape, 0.0, layers, rng)
    s = rng.uniform(0.3, 1.0) * scale  # partial volume: thin sulci blur into the grey matter
    img = ndimage.gaussian_filter(img, sigma=(0.0, s, s))
    img = R.mri_finish(img, rng, noise=rng.uniform(2.0, 10.0), bias=0.15)
    if stripped:
        keep = ndimage.binary_dilation(brain) if rng.random() < 0.5 else brain  # the mask or 1 voxel beyond
        img[~keep] = 0
    return img, brain.astype(np.uint8)


def ct_body(rng, size, n):
    """Whole-body contour on CT: everything inside the skin (lungs, organs, bone), not the table."""
    g = make_grid((n, size, size), rng, warp=0.04)
    body = _body(g, rng, rng.uniform(0.55, 0.72), rng.uniform(0.7, 0.9))
    lungs = np.zeros(g.shape, bool)
    if rng.random() < 0.6:
        for side in (-1, 1):
            lungs |= blob(g, (rng.uniform(-0.5, -0.1), -0.05, side * 0.38), (0.9, 0.42, 0.26), rng, 0.1)
        lungs &= ndimage.binary_erosion(body, iterations=3)
    organ = blob(g, (0.0, 0.05, rng.uniform(-0.4, 0.4)), (0.9, 0.3, 0.3), rng, 0.15) & body & ~lungs
    fat = body & ~ndimage.binary_erosion(body, iterations=int(rng.integers(2, 6)))
    table = np.abs(g.coords[-2] - 0.9 - 0.03 * g.coords[-1] ** 2) < 0.03
    hu = R.paint(g.shape, -1000.0, [(body, 40.0, 15.0), (fat, -100.0, 15.0), (organ, 60.0, 10.0),
                                   (lungs, -850.0, 30.0), (_spine(g, 0.4) & body, 600.0, 80.0),
                                   (table & ~body, 300.0, 20.0)], rng)
    return R.ct_finish(hu, rng), body.astype(np.uint8)


# ============================================================================ ultrasound
def us_echo_lv(rng, size, n):
    """Apical 4-chamber-like cine: (T, H, W), LV cavity beating over the frames."""
    g = make_grid((n, size, size), rng, warp=0.03)
    t = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi)
    beat = 1.0 + 0.18 * np.sin(2 * np.pi * t * rng.uniform(0.8, 1.5) + phase)
    cy, cx = rng.uniform(0.0, 0.15), rng.uniform(-0.12, 0.12)
    d = np.sqrt(((g.coords[1] - cy) / 0.5) ** 2 + ((g.coords[2] - cx) / (0.22 * beat)) ** 2)
    d = d + 0.05 * smooth_noise(g.shape, rng, 4)
    lv = d < 1.0
    myo = (d < 1.35) & ~lv
    sector = R.fan_mask((size, size))
    lv &= sector
    myo &= sector
    echo = R.paint(g.shape, 0.45, [(myo, 1.2, 0.2), (lv, 0.08, 0.03)], rng)
    label = np.zeros(g.shape, np.uint8)
    label[lv] = 1
    label[myo] = 2
    return R.us_finish(echo, rng, sector), label


def us_breast_lesion(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.03)
    y = g.coords[0]
    layers = 0.6 + 0.3 * np.sin(6 * y + 2 * smooth_noise(g.shape, rng, 5))
    c = (rng.uniform(-0.1, 0.35), rng.uniform(-0.4, 0.4))
    lesion = blob(g, c, (rng.uniform(0.12, 0.25), rng.uniform(0.18, 0.35)), rng, rng.uniform(0.1, 0.35))
    shadow = (np.abs(g.coords[1] - c[1]) < 0.2) & (y > c[0])
    echo = layers.astype(np.float32)
    echo[shadow] *= 0.55
    echo[y < -0.9] = 1.6  # skin line
    echo[lesion] = 0.1 + 0.05 * smooth_noise(g.shape, rng, 8)[lesion]
    return R.us_finish(echo, rng), lesion.astype(np.uint8)


def us_thyroid_nodule(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.03)
    thyroid = blob(g, (0.05, rng.uniform(-0.2, 0.2)), (0.4, 0.6), rng, 0.1)
    c = _pick_inside(thyroid, rng, g)
    r = rng.uniform(0.12, 0.22)
    nodule = blob(g, c, (r, r * rng.uniform(1.0, 1.4)), rng, 0.08)
    halo = ndimage.binary_dilation(nodule, iterations=2) & ~nodule
    echo = R.paint(g.shape, 0.45, [(thyroid, 0.9, 0.15), (nodule, rng.choice([0.35, 1.3]), 0.3),
                                  (halo, 0.05, 0.0)], rng)
    return R.us_finish(echo, rng), nodule.astype(np.uint8)


# ============================================================================ X-ray (2D)
def _chest(g: Grid, rng):
    body = blob(g, (0.1, 0.0), (1.1, 0.85), rng, 0.03)
    lungs = np.zeros(g.shape, bool)
    for side in (-1, 1):
        lungs |= blob(g, (-0.05, side * 0.4), (0.6, 0.27), rng, 0.08, angle=side * 0.1)
    heart = blob(g, (0.3, 0.1), (0.3, 0.3), rng, 0.06)
    ribs = np.zeros(g.shape, bool)
    for k in range(6):
        yk = -0.55 + 0.2 * k
        ribs |= np.abs(g.coords[0] - yk - 0.25 * g.coords[1] ** 2) < 0.025
    return body, lungs, heart, ribs & body


def xray_chest(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.03)
    body, lungs, heart, ribs = _chest(g, rng)
    heart &= body
    lungs = lungs & ~heart
    att = R.paint(g.shape, 0.0, [(body, 1.0, 0.1), (lungs, 0.35, 0.08), (heart, 1.2, 0.05)], rng)
    att = att + 0.5 * ribs
    label = np.zeros(g.shape, np.uint8)
    label[lungs] = 1
    label[heart] = 2
    return R.xray_finish(att, rng), label


def xray_clavicle(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.02)
    body, lungs, heart, ribs = _chest(g, rng)
    clav = np.zeros(g.shape, bool)
    for side in (-1, 1):
        p0 = np.array([0.12, 0.5 + side * 0.06]) * size
        p1 = np.array([0.08 + rng.uniform(-0.03, 0.03), 0.5 + side * 0.38]) * size
        mid = (p0 + p1) / 2 + np.array([-0.04 * size, 0])
        clav |= polyline_mask((size, size), np.stack([p0, mid, p1]), rng.uniform(2.0, 3.2) * size / 128)
    att = R.paint(g.shape, 0.0, [(body, 1.0, 0.1), (lungs & ~heart, 0.35, 0.08), (heart & body, 1.2, 0.05)], rng)
    att = att + 0.5 * ribs + 0.9 * clav
    return R.xray_finish(att, rng), clav.astype(np.uint8)


# ============================================================================ endoscopy (RGB)
def _mucosa(g: Grid, rng, size):
    folds = np.abs(np.sin(5 * g.coords[0] + 3 * smooth_noise(g.shape, rng, 4))) < 0.08
    lumen = blob(g, (rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)), (0.25, 0.25), rng, 0.2)
    return folds, lumen


def endoscopy_polyp(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.04)
    folds, lumen = _mucosa(g, rng, size)
    polyps = np.zeros(g.shape, bool)
    shade = np.zeros(g.shape, np.float32)
    for _ in range(int(rng.choice([1, 1, 1, 2]))):
        c = (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
        r = rng.uniform(0.15, 0.35)
        p = blob(g, c, (r, r * rng.uniform(0.8, 1.25)), rng, 0.12)
        d = np.sqrt((g.coords[0] - c[0] + 0.3 * r) ** 2 + (g.coords[1] - c[1] + 0.3 * r) ** 2) / r
        shade = np.where(p, np.clip(1.2 - 0.6 * d, 0.5, 1.2), shade)
        polyps |= p
    img = R.paint_rgb((size, size), (205, 110, 95), [(folds, (170, 70, 65), 8.0), (lumen, (60, 20, 20), 10.0),
                                                     (polyps, (215, 105, 85), 12.0)], rng)
    img = np.where(polyps[..., None], img * shade[..., None], img)
    return R.rgb_finish(img, rng, vignette=0.45, highlights=int(rng.integers(2, 6))), polyps.astype(np.uint8)


def endoscopy_instrument(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.02)
    folds, lumen = _mucosa(g, rng, size)
    side = rng.integers(4)
    start = [np.array([size - 1, rng.uniform(0.2, 0.8) * size]), np.array([rng.uniform(0.4, 0.9) * size, size - 1]),
             np.array([size - 1, rng.uniform(0.1, 0.5) * size]), np.array([rng.uniform(0.5, 0.9) * size, 0])][side]
    tip = np.array([rng.uniform(0.3, 0.6) * size, rng.uniform(0.3, 0.7) * size])
    shaft = polyline_mask((size, size), np.stack([start, tip]), rng.uniform(6, 10) * size / 128)
    jaw = blob(g, tuple(tip / size * 2 - 1), (0.08, 0.12), rng, 0.2, angle=rng.uniform(-1, 1))
    inst = shaft | jaw
    img = R.paint_rgb((size, size), (200, 105, 90), [(folds, (165, 70, 60), 8.0), (lumen, (55, 20, 20), 10.0),
                                                     (inst, (165, 168, 175), 25.0)], rng)
    return R.rgb_finish(img, rng, vignette=0.45, highlights=int(rng.integers(1, 4))), inst.astype(np.uint8)


# ============================================================================ dermoscopy / fundus (RGB)
def dermoscopy_lesion(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.05)
    lesion = blob(g, (rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)),
                  (rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.5)), rng, rng.uniform(0.15, 0.4),
                  angle=rng.uniform(-1.5, 1.5))
    dots = (smooth_noise(g.shape, rng, 20) > 0.4) & lesion
    hair = np.zeros(g.shape, bool)
    for _ in range(int(rng.integers(0, 6))):
        p = rng.uniform(0, size, (3, 2))
        hair |= polyline_mask((size, size), p, 0.8 * size / 128)
    img = R.paint_rgb((size, size), (225, 175, 155), [(lesion, (140, 85, 60), 25.0), (dots, (80, 45, 35), 10.0),
                                                      (hair, (50, 35, 30), 0.0)], rng)
    lens = R.disk_mask((size, size), 0.6)
    img[~lens] *= 0.15
    return R.rgb_finish(img, rng, vignette=0.25), lesion.astype(np.uint8)


def _fundus_base(g: Grid, rng, size, disc_c):
    fov = R.disk_mask((size, size), 0.47)
    vessels = np.zeros(g.shape, bool)
    start = (np.array(disc_c) + 1) / 2 * size
    for _ in range(int(rng.integers(5, 9))):
        ang = rng.uniform(0, 2 * np.pi)
        pts = [start]
        w = rng.uniform(1.2, 2.2) * size / 128
        for _k in range(4):
            ang += rng.uniform(-0.5, 0.5)
            pts.append(pts[-1] + rng.uniform(0.1, 0.2) * size * np.array([np.sin(ang), np.cos(ang)]))
        widths = np.linspace(w, w * 0.4, len(pts))
        vessels |= polyline_mask((size, size), np.stack(pts), widths)
    return fov, vessels & fov


def fundus_disc_cup(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.02)
    c = (rng.uniform(-0.15, 0.15), rng.choice([-1, 1]) * rng.uniform(0.3, 0.5))
    fov, vessels = _fundus_base(g, rng, size, c)
    r = rng.uniform(0.14, 0.2)
    disc = blob(g, c, (r * 1.08, r), rng, 0.05) & fov
    cup = blob(g, (c[0], c[1] + rng.uniform(-0.03, 0.03)), (r * 1.08 * rng.uniform(0.35, 0.7), r * rng.uniform(0.35, 0.7)),
               rng, 0.1) & disc
    img = R.paint_rgb((size, size), (190, 80, 35), [(disc, (235, 180, 90), 10.0), (cup, (250, 225, 160), 8.0),
                                                    (vessels, (130, 30, 20), 5.0)], rng)
    img[~fov] = 3.0
    label = np.zeros(g.shape, np.uint8)
    label[disc] = 1
    label[cup] = 2
    return R.rgb_finish(img, rng, vignette=0.3), label


def fundus_vessels(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.02)
    c = (rng.uniform(-0.15, 0.15), rng.choice([-1, 1]) * rng.uniform(0.3, 0.5))
    fov, vessels = _fundus_base(g, rng, size, c)
    disc = blob(g, c, (0.16, 0.15), rng, 0.05) & fov
    img = R.paint_rgb((size, size), (190, 80, 35), [(disc, (235, 180, 90), 10.0), (vessels, (125, 28, 18), 5.0)], rng)
    img[~fov] = 3.0
    return R.rgb_finish(img, rng, vignette=0.3, blur=0.6), vessels.astype(np.uint8)


# ============================================================================ microscopy
def microscopy_nuclei(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.0)
    k = int(rng.integers(15, 40))
    centers = [tuple(rng.uniform(-0.95, 0.95, 2)) for _ in range(k)]
    masks = [blob(g, c, (rng.uniform(0.05, 0.09), rng.uniform(0.05, 0.09)), rng, 0.05, angle=rng.uniform(-3, 3),
                  coarse=8) for c in centers]
    masks = split_touching(masks, centers, g)  # clustered nuclei touch, never overlap
    nuclei = np.zeros(g.shape, bool)
    signal = np.zeros(g.shape, np.float32) + 0.05
    for m in masks:
        nuclei |= m
        signal[m] = rng.uniform(0.4, 0.9)
    signal += 0.15 * smooth_noise(g.shape, rng, 24) * nuclei
    return R.fluorescence_finish(signal, rng), nuclei.astype(np.uint8)


def microscopy_glands(rng, size, _n):
    g = make_grid((size, size), rng, warp=0.05)
    glands = np.zeros(g.shape, bool)
    lumen = np.zeros(g.shape, bool)
    for _ in range(int(rng.integers(2, 6))):
        c = tuple(rng.uniform(-0.7, 0.7, 2))
        r = rng.uniform(0.12, 0.25)
        gl = blob(g, c, (r, r * rng.uniform(0.7, 1.4)), rng, 0.15, angle=rng.uniform(-3, 3))
        lu = blob(g, c, (r * 0.5, r * 0.5), rng, 0.2) & gl
        glands |= gl
        lumen |= lu
    nuclei_dots = (smooth_noise(g.shape, rng, 40) > 0.45) & glands & ~lumen
    img = R.paint_rgb((size, size), (235, 170, 200), [(glands, (170, 90, 160), 15.0), (nuclei_dots, (90, 40, 120), 5.0),
                                                      (lumen, (245, 235, 240), 5.0)], rng)
    return R.rgb_finish(img, rng, vignette=0.05), glands.astype(np.uint8)


# ============================================================================ registry
def _t(name, modality, style, dims, labels, spacing, builder, description, slices=0, channels=1, axis0="z",
       traits=()):
    return TaskSpec(name, modality, style, dims, dict(labels), tuple(spacing), builder, description, slices,
                    channels, axis0, tuple(traits))


TASKS: Dict[str, TaskSpec] = {t.name: t for t in [
    _t("ct_liver_tumor", "ct", "ct", 3, {1: "liver", 2: "liver_tumor"}, (0.8, 0.8, 2.5), ct_liver_tumor,
       "liver with 1-3 hypodense tumours inside (nested labels)", 32, traits=("nested", "appear_vanish")),
    _t("ct_kidney", "ct", "ct", 3, {1: "kidney"}, (0.8, 0.8, 2.5), ct_kidney,
       "two contrast-enhanced kidneys with a renal-sinus hole", 32, traits=("multi_instance", "holes")),
    _t("ct_aorta", "ct", "ct", 3, {1: "aorta"}, (0.8, 0.8, 2.5), ct_aorta,
       "curving contrast-filled aorta that bifurcates into the iliac arteries", 32,
       traits=("vessel", "split_across_slices")),
    _t("ct_lung_nodule", "ct", "ct", 3, {1: "lung", 2: "lung_nodule"}, (0.7, 0.7, 2.0), ct_lung_nodule,
       "two lungs with 2-4 small nodules that appear and vanish across slices", 32,
       traits=("small", "appear_vanish", "multi_instance")),
    _t("ct_abdomen_multi", "ct", "ct", 3, {1: "spleen", 2: "stomach", 3: "pancreas"}, (0.8, 0.8, 2.5),
       ct_abdomen_multi, "three touching abdominal organs of similar density", 32, traits=("touching",)),
    _t("ct_vertebrae", "ct", "ct", 3, {1: "vertebra"}, (0.8, 0.8, 2.5), ct_vertebrae,
       "stacked vertebral bodies separated by discs (periodic appearance along z)", 32,
       traits=("multi_instance", "appear_vanish")),
    _t("ct_body", "ct", "ct", 3, {1: "body"}, (1.2, 1.2, 3.0), ct_body,
       "whole-body contour including dark lungs inside it; the scanner table is not body", 24,
       traits=("whole_organ",)),
    _t("mri_brain_tumor", "mri", "mri", 3, {1: "edema", 2: "tumor_core"}, (1.0, 1.0, 1.5), mri_brain_tumor,
       "FLAIR-like brain with a bright oedema around a heterogeneous tumour core", 32, traits=("nested",)),
    _t("mri_brain", "mri", "mri", 3, {1: "brain"}, (1.5, 1.5, 1.5), mri_brain,
       "whole brain (ventricles and sulci included) on a T1/T2-like head, skull-stripped or not", 40,
       traits=("whole_organ", "appear_vanish")),
    _t("mri_brain_cortex", "mri", "mri", 3, {1: "brain"}, (1.5, 1.5, 1.5), mri_brain_cortex,
       "whole brain with a folded cortical ribbon, temporal lobes, cerebellum and brainstem; mostly skull-stripped",
       40, traits=("whole_organ", "appear_vanish")),
    _t("mri_hippocampus", "mri", "mri", 3, {1: "hippocampus"}, (1.0, 1.0, 1.0), mri_hippocampus,
       "two small low-contrast elongated structures", 32, traits=("small", "multi_instance", "low_contrast")),
    _t("mri_cardiac", "mri", "mri", 3, {1: "lv_cavity", 2: "myocardium", 3: "rv_cavity"}, (1.5, 1.5, 8.0),
       mri_cardiac, "short-axis stack: LV cavity, myocardial ring (a hole), touching RV", 16,
       traits=("holes", "touching", "thick_slices")),
    _t("mri_prostate", "mri", "mri", 3, {1: "prostate"}, (0.6, 0.6, 3.0), mri_prostate,
       "T2-like pelvis with a low-contrast prostate between bladder and rectum", 32, traits=("low_contrast",)),
    _t("us_echo_lv", "ultrasound", "ultrasound", 3, {1: "lv_cavity", 2: "myocardium"}, (0.3, 0.3, 1.0),
       us_echo_lv, "echocardiography cine (axis 0 = time): beating LV with speckle", 24, axis0="t",
       traits=("video", "deforming", "speckle")),
    _t("us_breast_lesion", "ultrasound", "ultrasound", 2, {1: "lesion"}, (0.1, 0.1), us_breast_lesion,
       "hypoechoic breast lesion with posterior shadowing", traits=("speckle",)),
    _t("us_thyroid_nodule", "ultrasound", "ultrasound", 2, {1: "nodule"}, (0.08, 0.08), us_thyroid_nodule,
       "thyroid nodule with a dark halo", traits=("speckle",)),
    _t("xray_chest", "xray", "xray", 2, {1: "lung", 2: "heart"}, (0.5, 0.5), xray_chest,
       "chest radiograph: two lungs and the heart, ribs overlaid", traits=("touching", "multi_instance")),
    _t("xray_clavicle", "xray", "xray", 2, {1: "clavicle"}, (0.5, 0.5), xray_clavicle,
       "two thin clavicles crossing ribs", traits=("thin", "multi_instance")),
    _t("endoscopy_polyp", "endoscopy", "endoscopy", 2, {1: "polyp"}, (0.2, 0.2), endoscopy_polyp,
       "colonoscopy polyp(s) with specular highlights", channels=3),
    _t("endoscopy_instrument", "endoscopy", "endoscopy", 2, {1: "instrument"}, (0.2, 0.2), endoscopy_instrument,
       "surgical instrument entering from the image border", channels=3, traits=("touches_border",)),
    _t("dermoscopy_lesion", "dermoscopy", "dermoscopy_fundus", 2, {1: "lesion"}, (0.05, 0.05), dermoscopy_lesion,
       "pigmented skin lesion with hairs and a lens vignette", channels=3),
    _t("fundus_disc_cup", "fundus", "dermoscopy_fundus", 2, {1: "optic_disc", 2: "optic_cup"}, (0.02, 0.02),
       fundus_disc_cup, "optic disc with the nested cup (label 1 = rim)", channels=3, traits=("nested",)),
    _t("fundus_vessels", "fundus", "dermoscopy_fundus", 2, {1: "vessel"}, (0.02, 0.02), fundus_vessels,
       "branching retinal vessels", channels=3, traits=("thin", "vessel")),
    _t("microscopy_nuclei", "microscopy", "microscopy", 2, {1: "nucleus"}, (0.0005, 0.0005), microscopy_nuclei,
       "fluorescence nuclei, many touching instances", traits=("multi_instance", "touching")),
    _t("microscopy_glands", "microscopy", "microscopy", 2, {1: "gland"}, (0.0005, 0.0005), microscopy_glands,
       "H&E-like glands (lumen included in the label)", channels=3, traits=("multi_instance",)),
]}
