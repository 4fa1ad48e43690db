"""Export a `SAM2Model` as separate ONNX graphs plus a JSON manifest.

Graphs (each the forward of an existing module or method; nothing re-implemented):

- ``image_encoder``: `SAM2Model.encode_image` (trunk, FPN neck, the decoder's high-res projections)
  images (B, 3, S, S) → vision_feats (B, C, h, w), vision_pos (B, C, h, w), high_res_0 (B, C/8, 4h, 4w),
  high_res_1 (B, C/4, 2h, 2w). Models with a temporal adapter get one graph per clip length T
  (``image_encoder_t{T}``, B a multiple of T); models that track on regions (`engine/region.py`) also get
  ``image_encoder_{R}px`` and ``mask_decoder_{R}px`` for regions of R² (`region_input_size`).
- ``mask_decoder``: `MaskDecoder.predict_masks` fed by the prompt encoder's tokens
  image_embeddings (B, C, h, w), image_pe (1, C, h, w), sparse (B, N, C), dense (B, C, h, w), high-res
  features → all mask logits (B, K, 4h, 4w), IoU (B, K), mask tokens (B, K, C), object score (B, 1),
  K = num_multimask_outputs + 1. The prompt encoder (Fourier features of a few points, a small conv on a
  mask prompt) and the choice among the K masks stay in PyTorch around it.
- ``memory_attention``: `MemoryAttention.forward`; curr / curr_pos (B, HW, C), memory / memory_pos
  (B, N, M) spatial memory tokens, ptr / ptr_pos (B, P, M) object-pointer tokens (not rotated).
- ``memory_encoder``: `MemoryEncoder.forward`; pix_feat (B, C, h', w'), mask (B, 1, S', S') → features,
  pos (B, M, h', w').

Dynamic axes: the batch everywhere, N (prompt tokens) of the decoder, N (memory tokens) and P
(pointer tokens) of memory attention. The exporter is torch's TorchScript-based one (`dynamo=False`):
it needs only `onnx`, and exports these graphs about ten times faster than the torch.export-based one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..atomic import atomic_path
from ..model import SAM2Model

OPSET = 18
FORMAT = 2  # bump when the graphs' interface changes: cached exports are then made anew
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "int8")

ONNX_EXTRA_HINT = "pip install 'medmem[onnx]'"


class OnnxUnavailable(RuntimeError):
    """onnx / onnxruntime is not installed."""


def require_onnx(module: str = "onnxruntime"):
    """Import `module` (onnx or onnxruntime) or raise a one-line error naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxUnavailable(f"the ONNX path needs {module.split('.')[0]}, which is not installed: "
                              f"{ONNX_EXTRA_HINT}") from None


# ---------------------------------------------------------------------------------------- identity
def weights_hash(model: SAM2Model) -> str:
    """SHA-256 (first 16 hex digits) of the config, the graph format and every state-dict tensor."""
    h = hashlib.sha256()
    h.update(json.dumps(model.cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"format={FORMAT}".encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def encoder_clip_lengths(model: SAM2Model) -> List[int]:
    """Clip lengths the engine feeds the image encoder with (1 for single images; the adapter's window)."""
    from ..engine.features import adapter_layout

    _, window = adapter_layout(model)
    return sorted({1, window})


def encoder_graph_name(num_frames: int, size: Optional[int] = None) -> str:
    """The encoder graph for clips of num_frames at input size² (None: the model's own size)."""
    name = "image_encoder" if num_frames == 1 else f"image_encoder_t{num_frames}"
    return name if size is None else f"{name}_{size}px"


def decoder_graph_name(size: Optional[int] = None) -> str:
    """The mask-decoder graph for features of an input of size² (None: the model's own size)."""
    return "mask_decoder" if size is None else f"mask_decoder_{size}px"


def region_input_size(model: SAM2Model) -> Optional[int]:
    """The input size of the regions that region tracking encodes (`engine/region.py`), else None."""
    cfg = model.cfg
    if cfg.region_size > 0 and not model.has_memory and cfg.region_size != cfg.image_size:
        return cfg.region_size
    return None


# ---------------------------------------------------------------------------------------- graphs
class ImageEncoderGraph(nn.Module):
    """images (B, 3, S, S) → vision_feats, vision_pos, high_res_0, high_res_1 (`SAM2Model.encode_image`)."""

    def __init__(self, model: SAM2Model, num_frames: int) -> None:
        super().__init__()
        self.model, self.num_frames = model, num_frames

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        f = self.model.encode_image(images, self.num_frames)
        return (f.vision_feats, f.vision_pos, *f.high_res)


class MaskDecoderGraph(nn.Module):
    """`MaskDecoder.predict_masks` with one image per prompt (the engine repeats images before)."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.decoder = model.sam_mask_decoder

    def forward(self, image_embeddings, image_pe, sparse, dense, *high_res) -> Tuple[torch.Tensor, ...]:
        return self.decoder.predict_masks(image_embeddings, image_pe, sparse, dense, False,
                                          list(high_res) if high_res else None)


class MemoryAttentionGraph(nn.Module):
    """`MemoryAttention.forward` with the pointer tokens as their own input (their count P is dynamic)."""

    def __init__(self, model: SAM2Model, hw: Tuple[int, int]) -> None:
        super().__init__()
        self.attn, self.hw = model.memory_attention, hw

    def forward(self, curr, curr_pos, memory, memory_pos, ptr, ptr_pos) -> torch.Tensor:
        mem = torch.cat([memory, ptr], dim=1)
        pos = torch.cat([memory_pos, ptr_pos], dim=1)
        return self.attn(curr, curr_pos, mem, pos, ptr.shape[1], self.hw)


class MemoryEncoderGraph(nn.Module):
    """`MemoryEncoder.forward`: pix_feat (B, C, h', w'), squashed mask (B, 1, S', S') → features, pos."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.enc = model.memory_encoder

    def forward(self, pix_feat, mask) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.enc(pix_feat, mask)


@dataclass
class GraphSpec:
    """One graph to export: its module, example inputs, names and dynamic axes."""

    name: str
    module: nn.Module
    inputs: Tuple[torch.Tensor, ...]
    input_names: List[str]
    output_names: List[str]
    dynamic: Dict[str, Dict[int, str]]
    extra: Dict[str, object]


def memory_grid_hw(model: SAM2Model) -> Tuple[int, int]:
    """Side of the grid memory attention works on (the feature grid pooled by cfg.memory_pool)."""
    g = model.cfg.feat_size // model.cfg.memory_pool
    return g, g


def graph_specs(model: SAM2Model) -> List[GraphSpec]:
    """What `export_onnx` writes for this model (example inputs sized from its config)."""
    cfg = model.cfg
    s, c, m = cfg.image_size, model.hidden_dim, model.mem_dim
    fs = cfg.feat_size
    specs = []
    hr_names = []
    with torch.no_grad():
        probe = model.encode_image(torch.zeros(1, 3, s, s), 1)
    hr_shapes = [tuple(t.shape[1:]) for t in probe.high_res]
    hr_names = [f"high_res_{i}" for i in range(len(hr_shapes))]
    region = region_input_size(model)
    for t in encoder_clip_lengths(model):
        b = 2 * t
        for size in (None, region) if region and t == 1 else (None,):  # regions are encoded one by one
            px = size or s
            specs.append(GraphSpec(
                encoder_graph_name(t, size), ImageEncoderGraph(model, t), (torch.randn(b, 3, px, px),), ["images"],
                ["vision_feats", "vision_pos", *hr_names],
                {n: {0: "batch"} for n in ["images", "vision_feats", "vision_pos", *hr_names]}, {"num_frames": t}))
    b, n = 2, 3
    for size in (None, region) if region else (None,):
        g = fs if size is None else fs * size // s
        with torch.no_grad():
            hr_sh = hr_shapes if size is None else [tuple(x.shape[1:]) for x in
                                                    model.encode_image(torch.zeros(1, 3, size, size), 1).high_res]
        pe = model.sam_prompt_encoder.dense_pe(None if size is None else (g, g)).detach().clone()
        dec_in = (torch.randn(b, c, g, g), pe, torch.randn(b, n, c), torch.randn(b, c, g, g),
                  *[torch.randn(b, *sh) for sh in hr_sh])
        dec_names = ["image_embeddings", "image_pe", "sparse", "dense", *hr_names]
        dec_out = ["masks", "iou_pred", "mask_tokens", "object_score_logits"]
        dyn = {k: {0: "batch"} for k in dec_names + dec_out if k != "image_pe"}
        dyn["sparse"] = {0: "batch", 1: "num_prompt_tokens"}
        specs.append(GraphSpec(decoder_graph_name(size), MaskDecoderGraph(model), dec_in, dec_names, dec_out, dyn,
                               {} if size is None else {"input_size": size}))
    if model.has_memory:
        gh, gw = memory_grid_hw(model)
        hw = gh * gw
        per_ptr = c // m if m < c else 1
        ma_in = (torch.randn(b, hw, c), torch.randn(b, hw, c), torch.randn(b, 2 * hw, m), torch.randn(b, 2 * hw, m),
                 torch.randn(b, 2 * per_ptr, m), torch.randn(b, 2 * per_ptr, m))
        ma_names = ["curr", "curr_pos", "memory", "memory_pos", "ptr", "ptr_pos"]
        dyn = {"curr": {0: "batch"}, "curr_pos": {0: "batch"}, "memory": {0: "batch", 1: "num_memory_tokens"},
               "memory_pos": {0: "batch", 1: "num_memory_tokens"}, "ptr": {0: "batch", 1: "num_pointer_tokens"},
               "ptr_pos": {0: "batch", 1: "num_pointer_tokens"}, "pix_feat_with_mem": {0: "batch"}}
        specs.append(GraphSpec("memory_attention", MemoryAttentionGraph(model, (gh, gw)), ma_in, ma_names,
                               ["pix_feat_with_mem"], dyn, {"grid_hw": [gh, gw], "tokens_per_pointer": per_ptr}))
        ms = s // cfg.memory_pool
        me_in = (torch.randn(b, c, gh, gw), torch.randn(b, 1, ms, ms))
        dyn = {k: {0: "batch"} for k in ("pix_feat", "mask", "maskmem_features", "maskmem_pos")}
        specs.append(GraphSpec("memory_encoder", MemoryEncoderGraph(model), me_in, ["pix_feat", "mask"],
                               ["maskmem_features", "maskmem_pos"], dyn, {}))
    return specs


def _shape(t: torch.Tensor, axes: Dict[int, str]) -> List[object]:
    return [axes.get(i, int(d)) for i, d in enumerate(t.shape)]


def _export_one(spec: GraphSpec, path: Path) -> dict:
    """Trace one graph into `path` (atomically); returns its manifest entry."""
    mod = spec.module.eval()
    with torch.inference_mode(False), torch.no_grad():
        outs = mod(*spec.inputs)  # fills the modules' position-encoding caches with ordinary tensors
        outs = outs if isinstance(outs, tuple) else (outs,)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constant shapes; the deprecation notice
            with atomic_path(path, suffix=".onnx") as tmp:
                torch.onnx.export(mod, spec.inputs, str(tmp), input_names=spec.input_names,
                                  output_names=spec.output_names, dynamic_axes=spec.dynamic, opset_version=OPSET,
                                  dynamo=False, do_constant_folding=True)
    return {
        "file": path.name,
        "inputs": [{"name": n, "shape": _shape(t, spec.dynamic.get(n, {}))}
                   for n, t in zip(spec.input_names, spec.inputs)],
        "outputs": [{"name": n, "shape": _shape(t, spec.dynamic.get(n, {}))}
                    for n, t in zip(spec.output_names, outs)],
        **spec.extra,
    }


def read_manifest(out_dir: Path) -> dict:
    """The manifest of an export folder; ValueError (one line) when missing or unreadable."""
    p = Path(out_dir) / MANIFEST
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"{out_dir} holds no ONNX export ({MANIFEST} missing): run `medmem export --onnx "
                         f"{out_dir}`") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable manifest ({e})") from None


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    with atomic_path(Path(out_dir) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def export_onnx(model: SAM2Model, out_dir: os.PathLike, precisions: Sequence[str] = ("fp32",)) -> dict:
    """Write the model's graphs (`graph_specs`) and `manifest.json` into `out_dir`; returns the manifest.

    precisions: "fp32" always; with "int8" also ORT dynamic-quantised copies (`<graph>.int8.onnx`).
    Every file is written atomically. The model is exported on the CPU in fp32."""
    require_onnx("onnx")
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    if model.device.type != "cpu" or next(model.parameters()).dtype != torch.float32:
        raise ValueError("export a model on the CPU in float32 (build it with device='cpu')")
    from .. import __version__

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        graphs = {spec.name: _export_one(spec, out_dir / f"{spec.name}.onnx") for spec in graph_specs(model)}
    finally:
        model.train(was_training)
    manifest = {
        "format": FORMAT,
        "medmem_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "config": model.cfg.name,
        "config_dict": model.cfg.to_dict(),
        "weights_sha256": weights_hash(model),
        "opset": OPSET,
        "graphs": graphs,
        "int8": {},
    }
    _write_manifest(out_dir, manifest)
    if "int8" in precisions:
        manifest = quantize_export(out_dir)
    return manifest


def quantize_export(out_dir: os.PathLike) -> dict:
    """Add ORT dynamic int8 copies of every graph (weights int8, activations quantised per call) to an
    export folder; returns the updated manifest."""
    require_onnx("onnx")
    q = require_onnx("onnxruntime.quantization")
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice to the root logger
    try:
        for name, g in manifest["graphs"].items():
            dst = out_dir / f"{name}.int8.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with atomic_path(dst, suffix=".onnx") as tmp:
                    q.quantize_dynamic(str(out_dir / g["file"]), str(tmp), weight_type=q.QuantType.QInt8,
                                       op_types_to_quantize=list(INT8_OPS))
            manifest["int8"][name] = dst.name
    finally:
        root.setLevel(level)
    manifest["int8_ops"] = list(INT8_OPS)
    _write_manifest(out_dir, manifest)
    return manifest


# ops whose weights dynamic quantisation turns into int8 (MatMul covers the Linear layers; convolutions
# stay fp32: ORT's ConvInteger is slower than its fp32 convolution on CPU)
INT8_OPS = ("MatMul", "Gemm")
