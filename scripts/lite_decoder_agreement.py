"""How far a fine-tuned LiteMedSAM decoder moved from LiteMedSAM's own answers, in 2D (one box, no memory).

For every test-split slice with an object (3D: every k-th such slice; 2D: the image) and every label, the
label's box is given to LiteMedSAM (`medmem_lite_256`, whose masks equal LiteMedSAM's own `predict_array`)
and to the same model with the fine-tuned decoder; reported per task: Dice of each against the label, and
the Dice between the two masks (agreement). On the bundled MRI (real, unlabelled for anything but the
brain) seeded random boxes inside the brain, 8-40 px a side, measure agreement on real anatomy the
fine-tune never saw.

    python scripts/lite_decoder_agreement.py --decoder pretrained:medmem_lite_ft_256 \
        --data runs/lite2d/manifest.json runs/lite3d/manifest.json --max-cases 1 --every 6 --mni-boxes 27 \
        --out docs/lite_ft_agreement.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import medmem
from medmem.atomic import atomic_path
from medmem.data.synth import load_manifest
from medmem.engine.image import ImagePredictor
from medmem.eval.metrics import dice
from medmem.io import read_volume, sample_path


def _box(mask: np.ndarray) -> list:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def load_student(decoder: str):
    """The student: `pretrained:NAME` (a shipped model, e.g. medmem_lite_ft_256) or a decoder state dict file
    (.safetensors, or a training checkpoint .pt) put into medmem_lite_256."""
    from safetensors.torch import load_file

    if decoder.startswith("pretrained:"):
        return medmem.build_model(decoder.split(":", 1)[1], pretrained=True).eval()
    model = medmem.build_model("medmem_lite_256", pretrained=True).eval()
    sd = torch.load(decoder, weights_only=False)["decoder"] if decoder.endswith(".pt") else load_file(decoder)  # a training checkpoint
    model.sam_mask_decoder.load_state_dict(sd)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decoder", required=True, help="pretrained:NAME or a decoder state dict file")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--max-cases", type=int, default=2, help="test cases per task and manifest")
    ap.add_argument("--mni-boxes", type=int, default=40)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    teacher = ImagePredictor(medmem.build_model("medmem_lite_256", pretrained=True))
    student = ImagePredictor(load_student(a.decoder))
    rows = defaultdict(lambda: defaultdict(list))

    def both(image, box):
        out = []
        for p in (teacher, student):
            m, s, _ = p.predict(box=box, multimask_output=False)
            out.append((m[0], float(s[0])))
        return out

    for manifest in a.data:
        seen: dict = defaultdict(int)
        for case in load_manifest(manifest, split="test"):
            if seen[case.task] >= a.max_cases:
                continue
            seen[case.task] += 1
            if case.dims == 3:
                fg = np.nonzero(case.label.reshape(case.label.shape[0], -1).any(1))[0]
                items = [(case.image[z], case.label[z]) for z in fg[::a.every]]
            else:
                items = [(case.image, case.label)]
            for img, lab in items:
                teacher.set_image(img)
                student.set_image(img)
                for v in (int(v) for v in np.unique(lab) if v != 0):
                    gt = lab == v
                    (mt, st), (ms, ss) = both(img, _box(gt))
                    r = rows[case.task]
                    r["teacher_dice"].append(dice(mt, gt))
                    r["student_dice"].append(dice(ms, gt))
                    r["agreement"].append(dice(ms, mt) if (ms.any() or mt.any()) else 1.0)
                    iou_s = (ms & gt).sum() / max((ms | gt).sum(), 1)
                    r["student_iou_error"].append(abs(ss - iou_s))
            print(json.dumps({case.id: {k: round(float(np.mean(v)), 4) for k, v in rows[case.task].items()}}), flush=True)
    out: dict = dict(command="python scripts/lite_decoder_agreement.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(a).items()))
    out["tasks"] = {t: {k: round(float(np.mean(v)), 4) for k, v in r.items()} | dict(n=len(r["agreement"]))
                    for t, r in rows.items()}
    # real anatomy: random boxes inside the bundled MRI's brain (axial slices), agreement only
    vol = read_volume(sample_path("mni152_t1")).array
    brain = read_volume(sample_path("mni152_brain_mask")).array > 0
    rng = np.random.default_rng(0)
    agree, sides = [], []
    for z in range(25, 70, 5):
        teacher.set_image(vol[z])
        student.set_image(vol[z])
        x0, y0, x1, y1 = _box(brain[z])
        for _ in range(max(1, a.mni_boxes // 9)):
            side = int(rng.integers(8, 41))
            bx = int(rng.integers(x0, max(x0 + 1, x1 - side)))
            by = int(rng.integers(y0, max(y0 + 1, y1 - side)))
            box = [bx, by, min(bx + side, vol.shape[2] - 1), min(by + side, vol.shape[1] - 1)]
            (mt, _), (ms, _) = both(vol[z], box)
            agree.append(dice(ms, mt) if (ms.any() or mt.any()) else 1.0)
            sides.append(side)
    out["mni152_random_boxes"] = dict(n=len(agree), mean_agreement=round(float(np.mean(agree)), 4),
                                      median_agreement=round(float(np.median(agree)), 4),
                                      min_agreement=round(float(np.min(agree)), 4))
    z, box = 37, [14, 14, 85, 104]
    teacher.set_image(vol[z])
    student.set_image(vol[z])
    (mt, st), (ms, ss) = both(vol[z], box)
    out["mni152_readme_box_slice37"] = dict(teacher_dice=round(dice(mt, brain[z]), 4),
                                            student_dice=round(dice(ms, brain[z]), 4),
                                            teacher_iou_pred=round(st, 4), student_iou_pred=round(ss, 4))
    print(json.dumps({k: v for k, v in out.items() if k != "tasks"}), flush=True)
    with atomic_path(Path(a.out)) as tmp:
        tmp.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
