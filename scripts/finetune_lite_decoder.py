"""Whole-organ fine-tune of LiteMedSAM's mask decoder, keeping its answers elsewhere (CPU).

LiteMedSAM outlines the distinct structure inside a box; for a box around a whole organ (a brain, a body
contour) it returns the white matter or an inner part. This fine-tunes its mask decoder (image and prompt
encoders frozen) on two kinds of samples at once:

- **whole-organ samples** (MedBank-mini's tasks with the `whole_organ` trait: `mri_brain`, `mri_brain_cortex`,
  `ct_body`): the synthetic label is the target (focal x 20 + Dice, SAM's weights);
- **keep samples** (every other MedBank-mini task): LiteMedSAM's own mask for the same box is the target
  (binary cross-entropy against its probabilities), so that its behaviour on everything else is kept.

Each step decodes the batch twice: on the whole slice (prompted slices, 2D images) and on the 128² region
around the object that region tracking encodes on propagated slices (`engine/region.py`; objects larger than
the region are seen shrunk there). The IoU head learns the actual IoU of the predicted mask with the label on
both kinds (calibration).
Encoder outputs are computed once per slice (LiteMedSAM's encoder costs ~1.3 s per slice here) and kept
in a feature file; training resumes from its last checkpoint when run again.

    python scripts/finetune_lite_decoder.py --out runs/lite_whole --steps 400   # scripts/train_lite_ft_model.sh
writes OUT/decoder.safetensors (the fine-tuned decoder's state dict), OUT/medmem_lite_ft_256.safetensors
(the shipped form: fp16 differences to LiteMedSAM's weights), OUT/model.safetensors (the whole model, to compare
it: `scripts/compare_default_models.py --model NAME=OUT/model.safetensors`) and OUT/log.jsonl.
Run again with more --steps, training goes on from its checkpoint; with the same --steps it only rewrites
the outputs.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import medmem
from medmem.data.synth import load_manifest
from medmem.data.synth_tasks import TASKS
from medmem.engine.region import region_around
from medmem.engine.window import grow_box
from medmem.preprocess import prepare_slices

WHOLE_TASKS = tuple(sorted(n for n, t in TASKS.items() if "whole_organ" in t.traits))  # mri_brain, ct_body, ...
SIZE = 256
REGION = 128  # region tracking's encoder input (medmem_lite_ft_256's region_size)


def _box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def region_sample(model, image: torch.Tensor, label: np.ndarray, rng: np.random.Generator, whole: bool):
    """Region-tracking input of one slice (engine/region.py, as `medmem_lite_256` with `region_size` encodes
    propagated slices): the region around one object's box grown by the tracking margin, its encoder output
    (1, 256, r/4, r/4) and the object's mask over the region (r, r) bool."""
    ids = [int(v) for v in np.unique(label) if v != 0]
    lab = ids[0] if whole else int(rng.choice(ids))
    cfg = model.cfg
    box = grow_box(_box(label == lab).tolist(), cfg.propagation_box_margin, SIZE)
    region = region_around(box, SIZE, REGION, cfg.region_context)
    mask = region.crop(torch.as_tensor(label == lab, dtype=torch.float32)[None, None])[0, 0] > 0.5
    with torch.inference_mode():
        emb = model.encode_image(region.crop(image[None])).vision_feats.half()
    return emb, mask


def gamma_augment(image: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """The volume with its intensities mapped through a random gamma in [lo, hi] (range kept): the
    grey/white contrast of real scans differs from the generator's."""
    if hi <= lo:
        return image
    a, b = float(image.min()), float(image.max())
    unit = (image.astype(np.float32) - a) / max(b - a, 1e-6)
    return (unit ** rng.uniform(lo, hi) * (b - a) + a).astype(np.float32)


def skull_strip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The head with everything outside the (randomly dilated, 0-2 voxels) brain label set to the volume's
    minimum, as skull-stripping tools leave brain MRI (BraTS-style data, templates); the label is unchanged."""
    from scipy.ndimage import binary_dilation

    keep = label > 0
    d = int(rng.integers(0, 3))
    if d:
        keep = binary_dilation(keep, iterations=d)
    return np.where(keep, image, image.min()).astype(np.float32)


def build_features(model, manifests, out: Path, every: int, max_cases: int, gamma=(1.0, 1.0),
                   strip=None) -> dict:
    """Encoder outputs (N, 256, 64, 64) fp16 of selected slices + their labels (N, 256, 256) (nearest resize) and
    kinds; and of one region per slice (region tracking): (N, 256, 32, 32) + that object's mask (N, 128, 128).
    strip: None, or (LO, HI): mri_brain volumes are also added skull-stripped (`skull_strip`) through a random
    gamma in [LO, HI]."""
    path = out / "features.pt"
    if path.is_file():
        return torch.load(path)
    rng = np.random.default_rng(1)
    embeds, labels, whole, names, rembeds, rmasks = [], [], [], [], [], []
    t0 = time.time()
    for manifest in manifests:
        per_task: dict = {}
        for case in load_manifest(manifest, split="train"):
            if case.dims != 3:
                continue
            if per_task.get(case.task, 0) >= max_cases:
                continue
            per_task[case.task] = per_task.get(case.task, 0) + 1
            fg = np.nonzero(case.label.reshape(case.label.shape[0], -1).any(1))[0]
            zs = fg[::every]
            variants = [("", gamma_augment(case.image, rng, *gamma) if case.task in WHOLE_TASKS else case.image)]
            if strip is not None and case.task == "mri_brain":
                stripped = skull_strip(case.image, case.label, rng)
                variants.append(("/strip", gamma_augment(stripped, rng, *strip)))
            lab = torch.as_tensor(case.label[zs].astype(np.uint8))[:, None].float()
            lab = F.interpolate(lab, (SIZE, SIZE), mode="nearest")[:, 0].to(torch.uint8)
            for tag, img in variants:
                x = prepare_slices(img, SIZE)[zs]
                with torch.inference_mode():
                    for i in range(0, len(zs), 4):
                        embeds.append(model.encode_image(x[i:i + 4]).vision_feats.half())
                for j, z in enumerate(zs):
                    e, mk = region_sample(model, x[j], lab[j].numpy(), rng, case.task in WHOLE_TASKS)
                    rembeds.append(e)
                    rmasks.append(mk)
                    labels.append(lab[j])
                    whole.append(case.task in WHOLE_TASKS)
                    names.append(f"{case.id}{tag}:{int(z)}")
                print(json.dumps(dict(case=case.id + tag, slices=len(zs), total=len(names),
                                      seconds=round(time.time() - t0, 1))), flush=True)
    feats = dict(embed=torch.cat(embeds), label=torch.stack(labels), whole=torch.tensor(whole), names=names,
                 region_embed=torch.cat(rembeds), region_mask=torch.stack(rmasks))
    torch.save(feats, path)
    return feats


def sample_boxes(label: np.ndarray, rng: np.random.Generator, whole: bool, tight_frac: float = 0.0,
                 loose_frac: float = 0.0, loose_max: float = 0.25):
    """A random object of the slice, its mask, and a box around it grown by 0-15 % and jittered by ±5 % (as box
    tracking gives them); with probability `tight_frac` a tight box instead, as users draw them (grown by 0-3 %,
    jittered by ±2 %), else with probability `loose_frac` a loose one (each side moved out by 0 to `loose_max`
    (0.25 = 25 %) of the object's size, as where an object shrinks from the tracked slice to the next);
    inclusive pixel corners."""
    ids = [int(v) for v in np.unique(label) if v != 0]
    lab = ids[0] if whole else int(rng.choice(ids))
    mask = label == lab
    x0, y0, x1, y1 = _box(mask)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    tight = tight_frac > 0 and rng.random() < tight_frac
    g = rng.uniform(0.0, 0.03 if tight else 0.15)
    s = 0.02 if tight else 0.05
    j = rng.uniform(-s, s, 4) * np.array([w, h, w, h])
    b = np.array([x0 - g * w / 2, y0 - g * h / 2, x1 + g * w / 2, y1 + g * h / 2]) + j
    if not tight and loose_frac > 0 and rng.random() < loose_frac:
        b = b + rng.uniform(0.0, loose_max, 4) * np.array([-w, -h, w, h])
    hh, ww = label.shape
    b = np.clip(b, 0, [ww - 1, hh - 1, ww - 1, hh - 1])
    return mask, b


def decode(model, embed, boxes):
    """Low-res logits (B, 1, 4h, 4w) and IoU predictions (B, 1) for embeddings (B, 256, h, w) and boxes (B, 4)
    in input pixels (a 256² slice, or a region of side 4h)."""
    coords = torch.as_tensor(boxes.reshape(-1, 2, 2), dtype=torch.float32)
    labels = torch.tensor([[2, 3]], dtype=torch.int32).expand(len(boxes), -1)
    pad = model.pad_points(labels)
    grid = tuple(embed.shape[-2:])
    pe = model.sam_prompt_encoder
    sparse, dense = pe((coords, labels), None, None, pad=pad, grid_hw=grid)
    dec = model.sam_mask_decoder(embed, pe.dense_pe(grid), sparse, dense, False, repeat_image=False,
                                 high_res_features=None)
    return dec.masks, dec.iou_pred


def focal(logits, target, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    a = alpha * target + (1 - alpha) * (1 - target)
    return (a * ce * (1 - pt) ** gamma).flatten(1).mean(1)


def soft_dice(logits, target):
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def _range(text: str) -> tuple:
    """"LO,HI" → (LO, HI) floats."""
    lo, hi = (float(v) for v in text.split(","))
    return lo, hi


def _pair(text: str, form: str, at_most_one: bool = True) -> tuple:
    """"A" → (A, A); "A,B" → (A, B): two shares >= 0, and <= 1 with `at_most_one`; `form` names them in the
    one-line error."""
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    hi = 1.0 if at_most_one else float("inf")
    if len(v) not in (1, 2) or not all(0.0 <= x <= hi for x in v):
        raise SystemExit(f"expected {form} with shares {'in [0, 1]' if at_most_one else '>= 0'}, got {text!r}")
    return (v[0], v[-1])


def _per_part(text: str) -> tuple:
    """"F" → (F, F); "F,R" → (F, R): a share for whole slices and one for regions."""
    return _pair(text, "F or F,R")


def _per_kind(text: str) -> tuple:
    """"M" → (M, M); "W,K" → (W, K): a non-negative share for whole-organ and one for keep samples."""
    return _pair(text, "M or W,K", at_most_one=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["runs/lite3d/manifest.json", "runs/medbank_whole/manifest.json"])
    ap.add_argument("--out", default="runs/lite_whole")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--every", type=int, default=3, help="every k-th slice with an object")
    ap.add_argument("--max-cases", type=int, default=6, help="training volumes per task and manifest")
    ap.add_argument("--whole-frac", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gamma", default="1,1", help="LO,HI: random gamma of whole-organ volumes (1,1: none)")
    ap.add_argument("--tight-frac", default="0", metavar="F[,R]",
                    help="share of tight boxes (as users draw them); F,R: F on whole slices, R on regions")
    ap.add_argument("--loose-frac", default="0", metavar="F[,R]",
                    help="share of loose boxes (sides out by up to 25 %%: an object shrinking along the volume); "
                         "F,R: F on whole slices (prompted slices, 2D images), R on regions (tracked slices)")
    ap.add_argument("--loose-max", default="0.25", metavar="W[,K]",
                    help="a loose box's sides move out by up to this share of the object's size (0.25 = 25 %%); "
                         "W,K: W for whole-organ samples, K for keep samples")
    ap.add_argument("--strip", default=None, metavar="LO,HI",
                    help="add skull-stripped copies of the mri_brain volumes, through a random gamma in [LO, HI]")
    ap.add_argument("--also-features", nargs="*", default=[], help="features.pt files of earlier runs, added")
    ap.add_argument("--init-decoder", default=None, help="start from this decoder (decoder.safetensors)")
    a = ap.parse_args()
    tight, loose = _per_part(a.tight_frac), _per_part(a.loose_frac)
    loose_max = _per_kind(a.loose_max)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = medmem.build_model("medmem_lite_256", pretrained=True).eval()
    teacher = medmem.build_model("medmem_lite_256", pretrained=True).eval()
    feats = build_features(teacher, a.data, out, a.every, a.max_cases, _range(a.gamma),
                           None if a.strip is None else _range(a.strip))
    for extra in a.also_features:
        more = torch.load(extra)
        feats = {k: (feats[k] + more[k]) if isinstance(feats[k], list) else torch.cat([feats[k], more[k]])
                 for k in feats}
    if a.init_decoder:
        from safetensors.torch import load_file

        model.sam_mask_decoder.load_state_dict(load_file(a.init_decoder))
    n = len(feats["names"])
    whole_idx = np.nonzero(feats["whole"].numpy())[0]
    keep_idx = np.nonzero(~feats["whole"].numpy())[0]
    print(json.dumps(dict(slices=n, whole=len(whole_idx), keep=len(keep_idx))), flush=True)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for p in model.sam_mask_decoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    start = 0
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)  # our own checkpoint (optimizer state)
        model.sam_mask_decoder.load_state_dict(st["decoder"])
        opt.load_state_dict(st["opt"])
        start = st["step"]
    rng = np.random.default_rng(a.seed + start)
    log = (out / "log.jsonl").open("a")
    t0 = time.time()
    model.sam_mask_decoder.train()

    def part(embed, masks, boxes, is_whole):
        """Losses of one batch of the same grid: (per-sample loss, whole-organ Dice, keep BCE, IoU MSE)."""
        gt = torch.as_tensor(np.stack(masks), dtype=torch.float32)[:, None]
        logits, iou = decode(model, embed, boxes)
        with torch.no_grad():
            t_prob = torch.sigmoid(decode(teacher, embed, boxes)[0])
            pred = (logits > 0).float()
            inter = (pred * gt).flatten(1).sum(1)
            union = ((pred + gt) > 0).float().flatten(1).sum(1)
            actual_iou = inter / union.clamp(min=1)
        seg = 20 * focal(logits, gt) + soft_dice(logits, gt)
        keep = F.binary_cross_entropy_with_logits(logits, t_prob, reduction="none").flatten(1).mean(1) * 20
        iou_loss = F.mse_loss(iou[:, 0], actual_iou, reduction="none")
        w = is_whole
        dice = float(1 - soft_dice(logits[w].detach(), gt[w]).mean()) if w.any() else float("nan")
        return torch.where(w, seg, keep) + iou_loss, dice, float(keep[~w].mean()) / 20, float(iou_loss.mean())

    for step in range(start, a.steps):
        lr = float(a.lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / a.steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        nw = int(round(a.batch * a.whole_frac))
        idx = np.concatenate([rng.choice(whole_idx, nw), rng.choice(keep_idx, a.batch - nw)])
        is_whole = torch.zeros(a.batch, dtype=torch.bool)
        is_whole[:nw] = True
        # the whole slice (prompted slices, 2D images) ...
        masks, boxes = zip(*[sample_boxes(feats["label"][i].numpy(), rng, bool(feats["whole"][i]), tight[0],
                                           loose[0], loose_max[0 if feats["whole"][i] else 1])
                              for i in idx])
        full = part(feats["embed"][idx].float(), masks, np.stack(boxes), is_whole)
        # ... and regions around the object (propagated slices with region tracking)
        masks, boxes = zip(*[sample_boxes(feats["region_mask"][i].numpy(), rng, True, tight[1], loose[1],
                                           loose_max[0 if feats["whole"][i] else 1])
                              for i in idx])
        reg = part(feats["region_embed"][idx].float(), masks, np.stack(boxes), is_whole)
        loss = torch.cat([full[0], reg[0]]).mean()
        rec = dict(step=step + 1, lr=round(lr, 7), loss=round(loss.item(), 4), whole_dice=round(full[1], 4),
                   whole_dice_region=round(reg[1], 4), keep_bce=round(full[2], 4), keep_bce_region=round(reg[2], 4),
                   iou_mse=round((full[3] + reg[3]) / 2, 4), seconds=round(time.time() - t0, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if (step + 1) % 10 == 0:
            print(json.dumps(rec), flush=True)
        if (step + 1) % 50 == 0 or step + 1 == a.steps:
            tmp = out / "checkpoint.tmp"
            torch.save(dict(decoder=model.sam_mask_decoder.state_dict(), opt=opt.state_dict(), step=step + 1), tmp)
            tmp.replace(ckpt)
    write_outputs(model, out)


def write_outputs(model, out: Path) -> None:
    """OUT/decoder.safetensors (the decoder's state dict), OUT/medmem_lite_ft_256.safetensors (what is
    shipped: fp16 differences to LiteMedSAM's decoder, `medmem.pretrained.write_trained_parts`) and
    OUT/model.safetensors (the whole model with medmem_lite_ft_256's config, for `--checkpoint` and the
    comparison scripts; never shipped: it holds LiteMedSAM's weights)."""
    from safetensors.torch import save_file

    from medmem.atomic import atomic_path
    from medmem.checkpoint import save_weights
    from medmem.config import get_config
    from medmem.pretrained import write_trained_parts

    sd = {k: v.contiguous() for k, v in model.sam_mask_decoder.state_dict().items()}
    with atomic_path(out / "decoder.safetensors") as tmp:
        save_file(sd, str(tmp))
    write_trained_parts(model.state_dict(), "medmem_lite_ft_256", out / "medmem_lite_ft_256.safetensors")
    cfg = model.cfg
    model.cfg = get_config("medmem_lite_ft_256")
    save_weights(model, out / "model.safetensors")
    model.cfg = cfg


if __name__ == "__main__":
    main()
