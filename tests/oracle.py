"""Build the official `sam2` implementation (a test-only dependency) from a medmem config.

Used as the test oracle: same random weights, same inputs, outputs compared.
"""
from __future__ import annotations

import torch

from medmem.config import SAM2Config

OFFICIAL_YAML = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


#: what the official video-predictor builder adds to every YAML (its "postprocessing" switches)
VIDEO_OVERRIDES = [
    "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
]


def official_model_yaml(name: str) -> dict:
    """The `model` section of an official YAML, composed with the video builder's overrides (no model built)."""
    import sam2  # noqa: F401  (initialises hydra with the package's config module)
    from hydra import compose
    from omegaconf import OmegaConf

    cfg = compose(config_name=OFFICIAL_YAML[name], overrides=VIDEO_OVERRIDES)
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg.model)


def official_values(model_yaml: dict) -> dict:
    """{medmem config path: official value} for every setting both sides have.

    A setting the YAML leaves out takes the default of the official class it configures.
    """
    import inspect

    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    def defaults(cls) -> dict:
        sig = inspect.signature(cls.__init__).parameters.items()
        return {k: p.default for k, p in sig if p.default is not inspect.Parameter.empty}

    def tuples(v):
        return tuple(tuples(x) for x in v) if isinstance(v, (list, tuple)) else v

    out = {}
    top = {**defaults(SAM2Base), **defaults(SAM2VideoPredictor), **model_yaml}
    for k, v in top.items():
        if not isinstance(v, dict) and not k.startswith("_"):
            out[k] = tuples(v)
    for k, v in (model_yaml.get("sam_mask_decoder_extra_args") or {}).items():
        out[k] = v
    enc = model_yaml["image_encoder"]
    trunk = {**defaults(Hiera), **enc["trunk"]}
    for k, v in trunk.items():
        if not k.startswith("_"):
            out[f"trunk.{k}"] = tuples(v)
    neck = enc["neck"]
    out.update({"trunk.scalp": enc.get("scalp", 0), "trunk.d_model": neck["d_model"],
                "trunk.channel_list": tuples(neck["backbone_channel_list"]),
                "trunk.fpn_top_down_levels": tuples(neck["fpn_top_down_levels"]),
                "trunk.fpn_interp_mode": neck["fpn_interp_model"], "hidden_dim": neck["d_model"]})
    att = model_yaml["memory_attention"]
    layer, sa, ca = att["layer"], att["layer"]["self_attention"], att["layer"]["cross_attention"]
    out.update({"mem_attn_layers": att["num_layers"], "mem_attn_ffn_dim": layer["dim_feedforward"],
                "mem_attn_dropout": layer["dropout"], "mem_attn_heads": sa["num_heads"],
                "rope_theta": sa["rope_theta"], "feat_size": sa["feat_sizes"][0], "mem_dim": ca["kv_in_dim"]})
    assert sa["feat_sizes"][0] == sa["feat_sizes"][1] and sa["dropout"] == ca["dropout"] == layer["dropout"]
    assert sa["num_heads"] == ca["num_heads"] and att["d_model"] == layer["d_model"] == neck["d_model"]
    mem = model_yaml["memory_encoder"]
    assert mem["out_dim"] == ca["kv_in_dim"]
    out["mem_fuser_layers"] = mem["fuser"]["num_layers"]
    return out


def build_official_from_yaml(name: str, video: bool = False):
    """The official model built by the official hydra config (CPU, eval, random weights)."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    builder = build_sam2_video_predictor if video else build_sam2
    return builder(OFFICIAL_YAML[name], ckpt_path=None, device="cpu", mode="eval")


def build_official(cfg: SAM2Config, video: bool = False, **video_kwargs):
    """Instantiate the official classes with the values of a medmem config (any size)."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base

    t = cfg.trunk
    trunk = Hiera(embed_dim=t.embed_dim, num_heads=t.num_heads, stages=t.stages, global_att_blocks=t.global_att_blocks,
                  window_spec=t.window_spec, window_pos_embed_bkg_spatial_size=t.window_pos_embed_bkg_spatial_size,
                  q_pool=t.q_pool, q_stride=t.q_stride)
    neck = FpnNeck(position_encoding=PositionEmbeddingSine(num_pos_feats=t.d_model, normalize=True),
                   d_model=t.d_model, backbone_channel_list=list(t.channel_list),
                   fpn_top_down_levels=list(t.fpn_top_down_levels), fpn_interp_model=t.fpn_interp_mode)
    image_encoder = ImageEncoder(trunk=trunk, neck=neck, scalp=t.scalp)
    c, fs = cfg.hidden_dim, cfg.feat_size
    self_attn = RoPEAttention(rope_theta=cfg.rope_theta, feat_sizes=[fs, fs], embedding_dim=c,
                              num_heads=cfg.mem_attn_heads, downsample_rate=1, dropout=cfg.mem_attn_dropout)
    cross_attn = RoPEAttention(rope_theta=cfg.rope_theta, feat_sizes=[fs, fs], rope_k_repeat=True, embedding_dim=c,
                               num_heads=cfg.mem_attn_heads, downsample_rate=1, dropout=cfg.mem_attn_dropout,
                               kv_in_dim=cfg.mem_dim)
    layer = MemoryAttentionLayer(activation="relu", cross_attention=cross_attn, d_model=c,
                                 dim_feedforward=cfg.mem_attn_ffn_dim, dropout=cfg.mem_attn_dropout,
                                 pos_enc_at_attn=False, pos_enc_at_cross_attn_keys=True,
                                 pos_enc_at_cross_attn_queries=False, self_attention=self_attn)
    memory_attention = MemoryAttention(d_model=c, pos_enc_at_input=True, layer=layer, num_layers=cfg.mem_attn_layers)
    memory_encoder = MemoryEncoder(
        out_dim=cfg.mem_dim,
        mask_downsampler=MaskDownSampler(embed_dim=c, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=c, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                    num_layers=cfg.mem_fuser_layers),
        position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.mem_dim, normalize=True),
        in_dim=c)
    kwargs = dict(
        image_encoder=image_encoder, memory_attention=memory_attention, memory_encoder=memory_encoder,
        num_maskmem=cfg.num_maskmem, image_size=cfg.image_size, backbone_stride=cfg.backbone_stride,
        sigmoid_scale_for_mem_enc=cfg.sigmoid_scale_for_mem_enc, sigmoid_bias_for_mem_enc=cfg.sigmoid_bias_for_mem_enc,
        binarize_mask_from_pts_for_mem_enc=cfg.binarize_mask_from_pts_for_mem_enc,
        use_mask_input_as_output_without_sam=cfg.use_mask_input_as_output_without_sam,
        max_cond_frames_in_attn=cfg.max_cond_frames_in_attn, directly_add_no_mem_embed=cfg.directly_add_no_mem_embed,
        use_high_res_features_in_sam=cfg.use_high_res_features_in_sam,
        multimask_output_in_sam=cfg.multimask_output_in_sam, multimask_min_pt_num=cfg.multimask_min_pt_num,
        multimask_max_pt_num=cfg.multimask_max_pt_num, multimask_output_for_tracking=cfg.multimask_output_for_tracking,
        use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
        memory_temporal_stride_for_eval=cfg.memory_temporal_stride_for_eval,
        non_overlap_masks_for_mem_enc=cfg.non_overlap_masks_for_mem_enc,
        use_obj_ptrs_in_encoder=cfg.use_obj_ptrs_in_encoder, max_obj_ptrs_in_encoder=cfg.max_obj_ptrs_in_encoder,
        add_tpos_enc_to_obj_ptrs=cfg.add_tpos_enc_to_obj_ptrs, proj_tpos_enc_in_obj_ptrs=cfg.proj_tpos_enc_in_obj_ptrs,
        use_signed_tpos_enc_to_obj_ptrs=cfg.use_signed_tpos_enc_to_obj_ptrs,
        only_obj_ptrs_in_the_past_for_eval=cfg.only_obj_ptrs_in_the_past_for_eval,
        pred_obj_scores=cfg.pred_obj_scores, pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
        fixed_no_obj_ptr=cfg.fixed_no_obj_ptr, soft_no_obj_ptr=cfg.soft_no_obj_ptr,
        use_mlp_for_obj_ptr_proj=cfg.use_mlp_for_obj_ptr_proj, no_obj_embed_spatial=cfg.no_obj_embed_spatial,
        sam_mask_decoder_extra_args=dict(
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh),
    )
    if video:
        from sam2.sam2_video_predictor import SAM2VideoPredictor

        model = SAM2VideoPredictor(**video_kwargs, **kwargs)
    else:
        model = SAM2Base(**kwargs)
    # the official decoder hard-codes these for the SAM heads; our test configs shrink them
    _shrink_official_heads(model, cfg)
    return model.eval()


def _shrink_official_heads(model, cfg: SAM2Config) -> None:
    """Rebuild the official SAM heads with a test config's decoder sizes (official sizes are unchanged)."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    if (cfg.decoder_heads, cfg.decoder_mlp_dim, cfg.iou_head_hidden_dim) == (8, 2048, 256):
        return
    c = cfg.hidden_dim
    model.sam_mask_decoder = MaskDecoder(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=c, mlp_dim=cfg.decoder_mlp_dim,
                                      num_heads=cfg.decoder_heads),
        transformer_dim=c, iou_head_depth=cfg.iou_head_depth, iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        use_high_res_features=cfg.use_high_res_features_in_sam,
        iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid, pred_obj_scores=cfg.pred_obj_scores,
        pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh)


def randomize_(model: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> torch.nn.Module:
    """Keep the model's own random init, but give constant-initialised tensors (zeros, ones, layer
    scales, position tables) random values too, so that no component is exercised only at a constant."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, t in sorted(list(model.named_parameters()) + list(model.named_buffers()), key=lambda kv: kv[0]):
            if t.is_floating_point() and t.numel() > 0 and bool((t == t.flatten()[0]).all()):
                base = 1.0 if float(t.flatten()[0]) == 1.0 else 0.0
                t.copy_(base + torch.randn(t.shape, generator=g) * (0.1 if base else scale * 5))
    return model
