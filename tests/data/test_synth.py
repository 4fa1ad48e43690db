import json

import numpy as np
import pytest
from scipy import ndimage

from medmem.data import synth
from medmem.data.synth_noise import corrupt_label
from medmem.data.synth_tasks import STYLES, TASKS

SMALL = 64  # tests run at 64 px to stay fast


@pytest.fixture(scope="module")
def cases():
    """One case per task at 64 px (seed 0, index 0)."""
    return {name: synth.make_case(name, 0, 0, SMALL) for name in TASKS}


def test_registry_covers_styles_dims_and_tasks():
    assert len(TASKS) >= 21
    assert set(t.style for t in TASKS.values()) == set(STYLES) and len(STYLES) == 7
    assert {t.dims for t in TASKS.values()} == {2, 3}
    for t in TASKS.values():
        assert t.modality in STYLES[t.style]
        assert len(t.spacing) == t.dims and all(s > 0 for s in t.spacing)
        assert sorted(t.labels) == list(range(1, len(t.labels) + 1))


def test_every_case_has_its_labels_and_expected_types(cases):
    for name, (img, lab, sp) in cases.items():
        spec = TASKS[name]
        assert set(np.unique(lab)) - {0} == set(spec.labels), name
        assert lab.dtype == np.uint8
        if spec.dims == 3:
            assert img.ndim == 3 and img.shape[1:] == (SMALL, SMALL) and img.shape == lab.shape
            assert len(sp) == 3
        else:
            assert img.shape[:2] == (SMALL, SMALL) == lab.shape
            assert img.dtype == np.uint8
            assert img.ndim == (3 if spec.channels == 3 else 2), name


def test_deterministic_per_seed_and_independent_of_order():
    a = synth.make_case("ct_liver_tumor", 2, seed=5, size=SMALL)
    synth.make_case("xray_chest", 0, seed=5, size=SMALL)  # other work in between changes nothing
    b = synth.make_case("ct_liver_tumor", 2, seed=5, size=SMALL)
    c = synth.make_case("ct_liver_tumor", 2, seed=6, size=SMALL)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    with pytest.raises(ValueError):
        synth.make_case("nope", 0)
    with pytest.raises(ValueError):
        synth.make_case("xray_chest", 0, size=8)


def test_ct_is_hounsfield_like(cases):
    img, lab, _ = cases["ct_liver_tumor"]
    assert img.dtype == np.int16
    assert (img < -900).mean() > 0.1  # air around the body
    liver = img[lab == 1].mean()
    tumor = img[lab == 2].mean()
    assert 30 < liver < 90 and tumor < liver - 15  # hypodense tumour
    lung_img, lung_lab, _ = cases["ct_lung_nodule"]
    assert lung_img[lung_lab == 1].mean() < -600


def test_mri_and_rgb_and_ultrasound_styles(cases):
    mri, lab, _ = cases["mri_brain_tumor"]
    assert mri.dtype == np.int16 and mri.min() >= 0
    assert mri[lab == 1].mean() > mri[(lab == 0) & (mri > 100)].mean()  # bright oedema
    rgb, _, _ = cases["endoscopy_polyp"]
    assert rgb.shape[-1] == 3 and rgb[..., 0].mean() > rgb[..., 2].mean()  # reddish mucosa
    us, lab, _ = cases["us_breast_lesion"]
    inside = us[ndimage.binary_erosion(lab == 1, iterations=2)]
    outside = us[lab == 0]
    assert inside.mean() < outside.mean()  # hypoechoic lesion
    assert outside.std() > 20  # speckle


def test_structural_traits(cases):
    # objects that appear and vanish across slices: nodules occupy only some slices
    _, lab, _ = cases["ct_lung_nodule"]
    per_slice = (lab == 2).reshape(lab.shape[0], -1).any(1)
    assert 0 < per_slice.sum() < lab.shape[0]
    # multiple instances: two kidneys
    _, lab, _ = cases["ct_kidney"]
    assert ndimage.label(lab == 1, structure=np.ones((3, 3, 3)))[1] >= 2
    # holes: the myocardium is a ring around the cavity on every slice where both exist
    _, lab, _ = cases["mri_cardiac"]
    z = int(np.argmax((lab == 1).reshape(lab.shape[0], -1).sum(1)))
    myo = lab[z] == 2
    assert (ndimage.binary_fill_holes(myo) & ~myo).sum() > 0
    # touching neighbours: spleen / stomach / pancreas share boundaries
    _, lab, _ = cases["ct_abdomen_multi"]
    grown = ndimage.binary_dilation(lab == 3)
    assert (grown & ((lab == 1) | (lab == 2))).any()
    # smooth deformation of the echo cine: neighbouring frames overlap strongly, but not fully
    _, lab, _ = cases["us_echo_lv"]
    lv = lab == 1
    dices = [2 * (lv[t] & lv[t + 1]).sum() / (lv[t].sum() + lv[t + 1].sum()) for t in range(lab.shape[0] - 1)]
    assert min(dices) > 0.8 and min(dices) < 1.0


def test_split_counts():
    assert synth.split_counts(1) == (1, 0, 0)
    assert synth.split_counts(2) == (1, 0, 1)
    assert synth.split_counts(3) == (1, 1, 1)
    assert synth.split_counts(8) == (6, 1, 1)
    assert synth.split_counts(20) == (14, 3, 3)
    with pytest.raises(ValueError):
        synth.split_counts(0)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("mb")
    tasks = ["xray_chest", "endoscopy_polyp", "ct_kidney", "us_echo_lv"]
    path = synth.generate(out, seed=3, size=SMALL, noise=0.67, cases_per_task=3, tasks=tasks)
    return out, path, tasks


def test_generate_layout_and_manifest(small_set):
    out, path, tasks = small_set
    assert path == out / "manifest.json"
    m = json.loads(path.read_text())
    assert m["name"] == "MedBank-mini" and m["seed"] == 3 and m["spacing_order"] == "itk_xyz"
    assert [t["name"] for t in m["tasks"]] == tasks
    for t in m["tasks"]:
        assert [c["split"] for c in t["cases"]] == ["train", "val", "test"]
        ext = ".nii.gz" if t["dims"] == 3 else ".png"
        for c in t["cases"]:
            assert c["image"].endswith(ext) and (out / c["image"]).is_file() and (out / c["label"]).is_file()
        noisy = [c for c in t["cases"] if c["label_noisy"]]
        assert len(noisy) == 2  # round(0.67 * 3)
        for c in noisy:
            assert (out / c["label_noisy"]).is_file() and c["noise"]["kind"]
    assert m["tasks"][2]["labels"] == {"1": "kidney"}


def test_load_manifest_round_trip(small_set):
    out, path, _ = small_set
    loaded = list(synth.load_manifest(path))
    assert len(loaded) == 12
    for case in loaded:
        idx = int(case.id.rsplit("_", 1)[1])
        img, lab, sp = synth.make_case(case.task, idx, seed=3, size=SMALL)
        np.testing.assert_array_equal(case.image, img)
        np.testing.assert_array_equal(case.label, lab)
        assert case.spacing == pytest.approx(sp)
        assert case.spacing_array_order == tuple(reversed(case.spacing))
        assert case.label_noisy is not None and case.label_noisy.shape == lab.shape
        if case.noise is not None:
            assert not np.array_equal(case.label_noisy, case.label)
        else:
            np.testing.assert_array_equal(case.label_noisy, case.label)
    assert [c.axis0 for c in loaded if c.task == "us_echo_lv"][0] == "t"
    val = list(synth.load_manifest(out, split="val", task=["ct_kidney", "xray_chest"]))
    assert sorted(c.task for c in val) == ["ct_kidney", "xray_chest"] and all(c.split == "val" for c in val)
    with pytest.raises(ValueError):
        next(synth.load_manifest(out / "ct_kidney"))


def test_generate_is_deterministic(tmp_path):
    p1 = synth.generate(tmp_path / "a", seed=1, size=SMALL, cases_per_task=1, tasks=["microscopy_nuclei"])
    p2 = synth.generate(tmp_path / "b", seed=1, size=SMALL, cases_per_task=1, tasks=["microscopy_nuclei"])
    assert p1.read_text() == p2.read_text()
    a = next(synth.load_manifest(p1))
    b = next(synth.load_manifest(p2))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.label_noisy is None  # generated without noise
    with pytest.raises(ValueError):
        synth.generate(tmp_path / "c", noise=1.5)
    with pytest.raises(ValueError):
        synth.generate(tmp_path / "c", tasks=["nope"])


# ----------------------------------------------------------------------------- label noise
def test_corrupt_label_kinds():
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:5, 5:15, 5:10] = 1
    lab[1:5, 5:15, 10:15] = 2
    rng = np.random.default_rng(0)
    for kind in ("erode", "dilate", "shift", "missing_slices", "swap"):
        noisy, info = corrupt_label(lab, rng, 3, kind)
        assert info["kind"] == kind and noisy.shape == lab.shape and noisy.dtype == lab.dtype
        assert not np.array_equal(noisy, lab), kind
        changed = [z for z in range(6) if not np.array_equal(noisy[z], lab[z])]
        assert set(changed) <= set(info["slices"])
    noisy, info = corrupt_label(lab, rng, 3, "missing_slices")
    assert all(noisy[z].max() == 0 for z in info["slices"])
    noisy, info = corrupt_label(lab[2], rng, 2, "swap")
    np.testing.assert_array_equal(noisy == 1, lab[2] == 2)
    noisy, info = corrupt_label(lab[2], rng, 2, "erode")
    assert (noisy > 0).sum() < (lab[2] > 0).sum()
    with pytest.raises(ValueError):
        corrupt_label(lab[2], rng, 2, "missing_slices")  # 2D has no slices
    with pytest.raises(ValueError):
        corrupt_label((lab[2] > 0).astype(np.uint8), rng, 2, "swap")  # needs two labels


def test_cli_synth(tmp_path):
    from click.testing import CliRunner

    from medmem.data.cli import data_group

    r = CliRunner().invoke(data_group, ["synth", str(tmp_path / "o"), "--size", "64", "--cases-per-task", "1",
                                        "--tasks", "xray_chest,fundus_disc_cup", "--seed", "2", "--noise", "1"])
    assert r.exit_code == 0, r.output
    m = synth.read_manifest(tmp_path / "o")
    assert [t["name"] for t in m["tasks"]] == ["xray_chest", "fundus_disc_cup"] and m["noise"] == 1.0
    assert all(t["cases"][0]["label_noisy"] for t in m["tasks"])
    bad = CliRunner().invoke(data_group, ["synth", str(tmp_path / "p"), "--tasks", "nope"])
    assert bad.exit_code == 2 and "unknown tasks" in bad.output
    listing = CliRunner().invoke(data_group, ["synth-tasks"])
    assert listing.exit_code == 0 and "ct_liver_tumor" in listing.output


def test_whole_organ_tasks_include_their_interior(cases):
    # the whole-brain label covers the dark ventricles / sulci inside it: it has no holes and
    # contains voxels much darker than the brain's median (CSF) as well as the brightest tissue
    img, lab, _ = cases["mri_brain"]
    brain = lab == 1
    for z in range(lab.shape[0]):
        assert not (ndimage.binary_fill_holes(brain[z]) & ~brain[z]).any()
    vals = img[brain]
    assert np.percentile(vals, 5) < 0.6 * np.median(vals) or np.percentile(vals, 95) > 1.3 * np.median(vals)
    per_slice = brain.reshape(brain.shape[0], -1).any(1)
    assert 0 < per_slice.sum() < brain.shape[0]  # the brain ends before the volume does
    # the CT body contour is filled (lungs, when a case has them, are inside it) and excludes the table
    img, lab, _ = synth.make_case("ct_body", 0, 0, 128)  # at 64 px the thin table blurs away
    body = lab == 1
    for z in range(lab.shape[0]):
        assert not (ndimage.binary_fill_holes(body[z]) & ~body[z]).any()
    assert (img[~body] > 100).any()  # the scanner table is outside the label


def test_cortex_brain_has_a_grey_rim_separate_low_parts_and_stripped_cases():
    # mri_brain_cortex: a grey-matter ribbon darker than the white matter inside it (T1, most cases), several
    # separate parts on low slices (temporal lobes, cerebellum, brainstem), the brain ends below the top
    # slice, and most cases are skull-stripped (exact zeros outside the brain)
    darker_rim = stripped = 0
    for i in range(6):
        img, lab, _ = synth.make_case("mri_brain_cortex", i, 0, SMALL)
        brain = lab == 1
        rim = brain & ~ndimage.binary_erosion(brain)
        inner = ndimage.binary_erosion(brain, iterations=3)
        darker_rim += np.median(img[rim]) < 0.95 * np.median(img[inner])
        stripped += bool((img[~ndimage.binary_dilation(brain)] == 0).all())
        n = brain.shape[0]
        assert not brain[-1].any() and brain[: n // 2].any(), i
        assert max(ndimage.label(brain[z])[1] for z in range(n // 3)) >= 3, i
    assert darker_rim >= 4 and stripped >= 2
