import math

import pytest
import torch

from medmem import get_config
from medmem.config import TemporalAdapterConfig
from medmem.model.sam2 import SAM2Model
from medmem.train.schedule import (FREEZE_GROUPS, WarmupCosine, check_groups_cover, freeze, lr_factor, param_groups,
                                   trunk_layer_id)


def test_lr_factor_warmup_then_cosine():
    total, warm, lo = 110, 10, 0.1
    assert lr_factor(0, total, warm, lo) == pytest.approx(0.1)
    assert lr_factor(4, total, warm, lo) == pytest.approx(0.5)
    assert lr_factor(9, total, warm, lo) == pytest.approx(1.0)
    assert lr_factor(10, total, warm, lo) == pytest.approx(1.0)          # cosine starts at the peak
    mid = 10 + (total - 1 - 10) / 2
    assert lr_factor(int(mid), total, warm, lo) == pytest.approx(lo + (1 - lo) * 0.5 * (1 + math.cos(
        math.pi * (int(mid) - 10) / 99)))
    assert lr_factor(total - 1, total, warm, lo) == pytest.approx(lo)     # reaches the floor on the last step
    vals = [lr_factor(s, total, warm, lo) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert lr_factor(0, 5, 0, 0.0) == pytest.approx(1.0)                   # no warm-up


def test_warmup_cosine_sets_scaled_group_lrs_and_restarts():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr_scale": 1.0}, {"params": [p2], "lr_scale": 0.5}], lr=1.0)
    s = WarmupCosine(opt, 2e-3, total=20, warmup=4, min_ratio=0.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.25)
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3 * 0.25)
    for _ in range(7):
        s.step()
    want = 2e-3 * lr_factor(7, 20, 4, 0.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(want)
    s2 = WarmupCosine(opt, 2e-3, total=20, warmup=4)
    s2.load_state_dict(s.state_dict())
    assert opt.param_groups[1]["lr"] == pytest.approx(want / 2)
    r = WarmupCosine(opt, 1.0, total=20, warmup=2, restart_every=10)
    assert [r.factor(s) for s in (0, 9, 10, 11)] == pytest.approx([0.5, 0.0, 0.5, 1.0])


def _adapter_model():
    cfg = get_config("test_tiny")
    cfg = cfg.replace(temporal_adapter=TemporalAdapterConfig(blocks=tuple(range(sum(cfg.trunk.stages))), num_frames=2))
    return SAM2Model(cfg)


def test_param_groups_layer_decay_and_no_decay():
    m = SAM2Model(get_config("test_tiny"))
    n_blocks = sum(m.cfg.trunk.stages)
    groups = param_groups(m, lr=1e-3, weight_decay=0.1, layer_decay=0.5)
    check_groups_cover(m, groups)
    where = {n: g for g in groups for n in g["names"]}
    assert where["image_encoder.trunk.blocks.0.attn.qkv.weight"]["lr_scale"] == pytest.approx(0.5 ** n_blocks)
    last = f"image_encoder.trunk.blocks.{n_blocks - 1}.attn.qkv.weight"
    assert where[last]["lr_scale"] == pytest.approx(0.5)
    assert where["image_encoder.trunk.pos_embed"]["lr_scale"] == pytest.approx(0.5 ** (n_blocks + 1))
    assert where["sam_mask_decoder.iou_token.weight"]["lr_scale"] == 1.0
    assert where["image_encoder.neck.convs.0.conv.weight"]["lr_scale"] == 1.0
    assert where[last]["lr"] == pytest.approx(1e-3 * 0.5)
    assert where["image_encoder.trunk.blocks.0.attn.qkv.bias"]["weight_decay"] == 0.0
    assert where["image_encoder.trunk.pos_embed"]["weight_decay"] == 0.0
    assert where["no_mem_embed"]["weight_decay"] == 0.0
    assert where["sam_mask_decoder.iou_prediction_head.layers.0.weight"]["weight_decay"] == 0.1
    assert trunk_layer_id("memory_attention.norm.weight", n_blocks) == n_blocks + 1
    no_decay = param_groups(m, 1e-3, 0.1, 1.0)
    assert {g["lr_scale"] for g in no_decay} == {1.0}


def test_freeze_groups():
    m = _adapter_model()
    names = [n for n, _ in m.named_parameters()]
    frozen = freeze(m, ["image_encoder"])
    assert frozen and all(n.startswith("image_encoder.") and ".adapter." not in n for n in frozen)
    adapters = [n for n in names if ".adapter." in n]
    assert adapters and all(dict(m.named_parameters())[n].requires_grad for n in adapters)
    # every parameter belongs to exactly one component group ("litemedsam" is a union of components)
    for n in names:
        assert sum(pred(n) for g, pred in FREEZE_GROUPS.items() if g != "litemedsam") == 1, n
    lite = [n for n in names if FREEZE_GROUPS["litemedsam"](n)]
    assert lite and all(n.split(".")[0] in ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder") for n in lite)
    assert not FREEZE_GROUPS["litemedsam"]("sam_mask_decoder.pred_obj_score_head.layers.0.weight")
    groups = param_groups(m, 1e-3, 0.1)
    check_groups_cover(m, groups)
    assert not any(n in frozen for g in groups for n in g["names"])
    with pytest.raises(ValueError):
        freeze(m, ["trunk"])
