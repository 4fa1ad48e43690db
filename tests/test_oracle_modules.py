"""Module-level equivalence with the official `sam2` implementation (the test oracle).

Same random weights (the official state dict loaded strictly into ours), same inputs;
outputs equal within 1e-4 in fp32 — for all 8 official configs and the small test configs.
Every compared reference is asserted to vary (a constant, like the no-object fill -1024 of
the mask logits, would make the comparison prove nothing); the mask heads run on a batch
with one object present and one absent, so both paths are compared in every case.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from medmem.config import OFFICIAL_MODELS, get_config
from medmem.model import ImageFeatures, MaskMemory, ObjectPointer, SAM2Model
from oracle import build_official, build_official_from_yaml, official_model_yaml, official_values, randomize_

sam2 = pytest.importorskip("sam2", reason="the official sam2 package is the test oracle (scripts/setup.sh --test)")
pytestmark = pytest.mark.oracle

TOL = dict(rtol=1e-4, atol=1e-4)
CONFIGS = list(OFFICIAL_MODELS) + ["test_tiny", "test_tiny_sam20"]


def varies(t: torch.Tensor) -> bool:
    """Whether a tensor holds more than one distinct value."""
    return t.numel() > 1 and not bool((t == t.flatten()[0]).all())


def close(a, b, msg="", constant_ok=False):
    """Equal within TOL; and, unless the value is constant by definition, the reference must vary."""
    if not constant_ok:
        assert varies(b), f"{msg}: the reference is constant ({b.flatten()[0].item()}), the comparison proves nothing"
    torch.testing.assert_close(a.float(), b.float(), **TOL, msg=lambda m: f"{msg}: {m}")


@pytest.fixture(scope="module", params=CONFIGS)
def pair(request):
    cfg = get_config(request.param)
    torch.manual_seed(0)
    off = randomize_(build_official(cfg), seed=1)
    ours = SAM2Model(cfg).eval()
    ours.load_state_dict(off.state_dict(), strict=True)
    # and ours into theirs, strictly
    off.load_state_dict(ours.state_dict(), strict=True)
    yield cfg, off, ours
    del off, ours


def seq(x):  # (B, C, H, W) → official (HW, B, C)
    return x.flatten(2).permute(2, 0, 1)


@torch.no_grad()
def test_image_encoder(pair):
    cfg, off, ours = pair
    side = min(cfg.image_size, 256)  # the trunk and neck are resolution-agnostic; keep it small
    x = torch.randn(2, 3, side, side)
    ref = off.forward_image(x)
    got = ours.encode_image(x)
    for i, (a, b) in enumerate(zip(got.backbone_fpn[2:], ref["backbone_fpn"][2:])):
        close(a, b, f"fpn level {i + 2}")
    close(got.high_res[0], ref["backbone_fpn"][0], "high-res s0 (conv_s0)")
    close(got.high_res[1], ref["backbone_fpn"][1], "high-res s1 (conv_s1)")
    for a, b in zip([got.vision_pos], ref["vision_pos_enc"][-1:]):
        close(a, b, "position encoding")


def _random_feats(cfg, b=2):
    c, fs = cfg.hidden_dim, cfg.feat_size
    return ImageFeatures(torch.randn(b, c, fs, fs), torch.randn(b, c, fs, fs),
                         [torch.randn(b, c // 8, 4 * fs, 4 * fs), torch.randn(b, c // 4, 2 * fs, 2 * fs)], [])


@contextlib.contextmanager
def _shifted_object_score(models, shift: float):
    """Add ``shift`` to the last bias of the object-score head of each model; restore it afterwards."""
    biases = []
    for m in models:
        head = m.sam_mask_decoder.pred_obj_score_head
        last = head.layers[-1] if hasattr(head, "layers") else head
        biases.append(last.bias)
    with torch.no_grad():
        for b in biases:
            b += shift
    try:
        yield
    finally:
        with torch.no_grad():
            for b in biases:
                b -= shift


MASK_OUTPUTS = ("low_res_multimasks", "high_res_multimasks", "low_res_masks", "high_res_masks")


@torch.no_grad()
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", ["click", "box_and_clicks", "mask"])
def test_sam_heads(pair, multimask, prompt):
    """One object scored present (real mask logits compared) and one absent (the no-object path)."""
    from medmem.model import NO_OBJ_SCORE

    cfg, off, ours = pair
    assert cfg.pred_obj_scores, "every config predicts object scores; without them there is no fill to avoid"
    f = _random_feats(cfg)
    s = cfg.image_size
    pts = mask = None
    if prompt == "click":
        pts = (torch.rand(2, 1, 2) * s, torch.ones(2, 1, dtype=torch.int32))
    elif prompt == "box_and_clicks":
        box = torch.tensor([[0.2, 0.3, 0.7, 0.8], [0.1, 0.1, 0.5, 0.4]]) * s
        pts = (torch.cat([box.reshape(2, 2, 2), torch.rand(2, 2, 2) * s], 1),
               torch.tensor([[2, 3, 1, 0], [2, 3, 0, 1]], dtype=torch.int32))
    else:  # one mostly-object and one mostly-background mask input, so that the objects score apart
        mask = torch.randn(2, 1, s // 4, s // 4) * 5 + torch.tensor([8.0, -8.0]).view(2, 1, 1, 1)
    scores = ours.sam_heads(f.vision_feats, f.high_res, pts, mask, multimask).object_score_logits.flatten()
    # the sign of +-d must not depend on fp32 round-off (~1e-6 between the two implementations)
    assert abs(float(scores[0] - scores[1])) > 2e-4, f"both objects score alike ({scores.tolist()}); change the inputs"
    present = int(scores.argmax())
    with _shifted_object_score((off, ours), -float(scores.mean())):  # scores become +d and -d
        ref = off._forward_sam_heads(f.vision_feats, {"point_coords": pts[0], "point_labels": pts[1]} if pts else None,
                                     mask, f.high_res, multimask)
        got = ours.sam_heads(f.vision_feats, f.high_res, pts, mask, multimask)
    names = ["low_res_multimasks", "high_res_multimasks", "ious", "low_res_masks", "high_res_masks", "obj_ptr",
             "object_score_logits"]
    for n, r in zip(names, ref):
        close(getattr(got, n), r, n)
        if n in MASK_OUTPUTS:
            assert varies(r[present]), f"{n}: the present object's mask logits are constant"
            assert bool((r[1 - present] == NO_OBJ_SCORE).all()), f"{n}: the absent object is not filled"


@torch.no_grad()
@pytest.mark.parametrize("from_pts", [True, False])
def test_memory_encoder(pair, from_pts):
    cfg, off, ours = pair
    f = _random_feats(cfg)
    fs = cfg.feat_size
    masks = torch.randn(2, 1, cfg.image_size, cfg.image_size) * 4
    obj = torch.tensor([[1.5], [-2.0]])  # one present, one absent object
    ref_f, ref_p = off._encode_new_memory([seq(f.vision_feats)], [(fs, fs)], masks, obj, from_pts)
    got_f, got_p = ours.encode_memory(f, masks, obj, from_pts)
    close(got_f, ref_f, "memory features")
    close(got_p, ref_p[0], "memory pos enc")


@torch.no_grad()
def test_mask_as_output(pair):
    cfg, off, ours = pair
    f = _random_feats(cfg)
    m = torch.zeros(2, 1, cfg.image_size, cfg.image_size)
    m[0, :, 10:60, 20:90] = 1  # second object: empty mask
    ref = off._use_mask_as_output(f.vision_feats, f.high_res, m)
    got = ours.mask_as_output(f, m)
    for n, r in zip(["low_res_masks", "high_res_masks", "ious", "low_res_masks", "high_res_masks", "obj_ptr",
                     "object_score_logits"], ref):
        close(getattr(got, n), r, n, constant_ok=n == "ious")  # the official sets IoU to 1 for mask outputs


@torch.no_grad()
def test_memory_attention(pair):
    """Memory attention on 2 mask memories + object pointers, with RoPE on a 16×16 grid."""
    cfg, off, ours = pair
    c, m, side, b = cfg.hidden_dim, cfg.mem_dim, 16, 2
    curr, curr_pos = torch.randn(b, c, side, side), torch.randn(b, c, side, side)
    mems = [torch.randn(b, m, side, side) for _ in range(2)]
    mpos = [torch.randn(b, m, side, side) for _ in range(2)]
    n_ptr = 3 * (c // m)
    ptr_tok, ptr_pos = torch.randn(n_ptr, b, m), torch.randn(n_ptr, b, m)
    memory = torch.cat([seq(x) for x in mems] + [ptr_tok], 0)
    memory_pos = torch.cat([seq(x) for x in mpos] + [ptr_pos], 0)
    ref = off.memory_attention(curr=[seq(curr)], curr_pos=[seq(curr_pos)], memory=memory, memory_pos=memory_pos,
                               num_obj_ptr_tokens=n_ptr)
    got = ours.memory_attention(seq(curr).transpose(0, 1), seq(curr_pos).transpose(0, 1), memory.transpose(0, 1),
                                memory_pos.transpose(0, 1), n_ptr, (side, side))
    close(got, ref.transpose(0, 1), "memory attention")


@torch.no_grad()
def test_memory_conditioning(pair):
    """Memory assembly (temporal encodings of mask memories and object pointers) + attention, vs official."""
    cfg, off, ours = pair
    c, m, b = cfg.hidden_dim, cfg.mem_dim, 1
    fs = min(cfg.feat_size, 16)  # attention is resolution-agnostic (RoPE tables follow the grid); keep it small
    f = ImageFeatures(torch.randn(b, c, fs, fs), torch.randn(b, c, fs, fs), [], [])
    out = {}
    for t in [0, 2, 3, 4]:
        out[t] = {"maskmem_features": torch.randn(b, m, fs, fs), "maskmem_pos_enc": [torch.randn(b, m, fs, fs)],
                  "obj_ptr": torch.randn(b, c)}
    output_dict = {"cond_frame_outputs": {0: out[0]}, "non_cond_frame_outputs": {t: out[t] for t in (2, 3, 4)}}
    ref = off._prepare_memory_conditioned_features(5, False, [seq(f.vision_feats)], [seq(f.vision_pos)], [(fs, fs)],
                                                   output_dict, num_frames=8)
    mems = [MaskMemory(out[0]["maskmem_features"], out[0]["maskmem_pos_enc"][0], 0)]
    # official: t_pos = num_maskmem - t_rel for the frame t_rel steps back
    for t in (4, 3, 2):
        mems.append(MaskMemory(out[t]["maskmem_features"], out[t]["maskmem_pos_enc"][0], cfg.num_maskmem - (5 - t)))
    signed = cfg.use_signed_tpos_enc_to_obj_ptrs
    ptrs = [ObjectPointer(out[0]["obj_ptr"], 5 if signed else 5)] + [ObjectPointer(out[t]["obj_ptr"], 5 - t) for t in (4, 3, 2)]
    got = ours.condition_on_memory(f, mems, ptrs, ptr_tpos_max=min(8, cfg.max_obj_ptrs_in_encoder) - 1)
    close(got, ref, "memory-conditioned features")


# settings of the official classes that medmem has no config field for (nothing to compare)
_NOT_IN_MEDMEM = {"image_encoder", "memory_attention", "memory_encoder", "compile_image_encoder", "fill_hole_area",
                  "sam_mask_decoder_extra_args", "clear_non_cond_mem_around_input", "clear_non_cond_mem_for_multi_obj",
                  "add_all_frames_to_correct_as_cond", "non_overlap_masks", "trunk.weights_path",
                  "trunk.return_interm_layers"}


def _ours(cfg, path: str):
    obj = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return tuple(obj) if isinstance(obj, list) else obj


@pytest.mark.parametrize("name", OFFICIAL_MODELS)
def test_config_matches_official_yaml(name):
    """Every setting that both our config and the official YAML (+ class defaults) have, equal."""
    cfg = get_config(name)
    compared, missing = 0, []
    for path, value in official_values(official_model_yaml(name)).items():
        if path in _NOT_IN_MEDMEM:
            continue
        try:
            ours = _ours(cfg, path)
        except AttributeError:
            missing.append(path)
            continue
        assert ours == value, f"{name}: {path} is {ours!r} here, {value!r} in the official config"
        compared += 1
    assert not missing, f"official settings with no medmem field (add one, or list them in _NOT_IN_MEDMEM): {missing}"
    assert compared >= 50, compared


def test_yaml_reading_agrees_with_the_built_official_model():
    """The YAML values used above are what the official builder really builds (checked once, on the tiny model)."""
    name = "sam2.1_hiera_tiny"
    values = official_values(official_model_yaml(name))
    off = build_official_from_yaml(name, video=True)
    checked = 0
    for k, v in values.items():
        attr = getattr(off, k, None)
        if isinstance(attr, (bool, int, float, str)) and not isinstance(attr, torch.Tensor):
            assert attr == v, f"{k}: built {attr!r}, read {v!r}"
            checked += 1
    assert checked >= 25, checked
    with torch.device("meta"):
        ours = SAM2Model(get_config(name))
    assert {k: v.shape for k, v in off.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
