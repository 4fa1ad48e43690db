"""The onnxruntime backend: a stand-in for `SAM2Model` whose heavy modules run as ONNX graphs.

    model = medmem.build_model("default", pretrained=True, device="cpu")
    session = medmem.VolumeSession(model, volume, backend="onnxruntime")        # or "onnxruntime-int8"
    predictor = medmem.ImagePredictor(model, backend="onnxruntime")

`OnnxSAM2` has the methods the engine calls on `SAM2Model` (encode_image, track_step,
encode_prompted_memory, sam_heads, ...). The image encoder, mask decoder, memory attention and
memory encoder run in onnxruntime (CPU execution provider, intra-op threads = torch's thread count);
the glue between them is `SAM2Model`'s own code, run with this object as `self` (memory assembly,
the choice among the decoder's masks, object pointers), so both backends share one code path.
Graphs are exported on first use into a cache folder keyed by the weights hash
(`$MEDMEM_ONNX_CACHE`, default `~/.cache/medmem/onnx/<hash>/`), or read from a folder written by
`medmem export --onnx DIR` (its manifest's weights hash must match the model).
"""
from __future__ import annotations

import os
import types
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ..model import ImageFeatures, SAM2Model
from ..model.mask_decoder import MaskDecoder
from .onnx import (FORMAT, ONNX_EXTRA_HINT, decoder_graph_name, encoder_graph_name, export_onnx, quantize_export,
                   read_manifest, region_input_size, require_onnx, weights_hash)

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")


def cache_root() -> Path:
    """Where exports made on first use are kept: $MEDMEM_ONNX_CACHE, else $XDG_CACHE_HOME/medmem/onnx."""
    env = os.environ.get("MEDMEM_ONNX_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medmem" / "onnx"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class Graph:
    """One ONNX graph in an onnxruntime `InferenceSession`: tensors in (in the export's input order), tensors out."""

    def __init__(self, path: Path, input_names: List[str], threads: int) -> None:
        ort = require_onnx("onnxruntime")
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(int(threads), 1)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        kept = {i.name for i in self.session.get_inputs()}  # inputs the graph does not read may be pruned
        self.input_names = [n for n in input_names]
        self._kept = kept

    def __call__(self, *tensors: torch.Tensor) -> List[torch.Tensor]:
        feed = {n: _np(t) for n, t in zip(self.input_names, tensors) if n in self._kept}
        return [torch.from_numpy(a) for a in self.session.run(None, feed)]


class _Borrow:
    """Runs the methods defined in `_cls` (its own functions, not inherited nn.Module ones) with this
    object as `self`; any other attribute is read from `_target`, the PyTorch module."""

    _cls: type = object

    def __init__(self, target) -> None:
        self._target = target

    def __getattr__(self, name: str):
        if name == "_target":
            raise AttributeError(name)
        attr = type(self)._cls.__dict__.get(name)
        if isinstance(attr, types.FunctionType):
            return types.MethodType(attr, self)
        if isinstance(attr, property):
            return attr.fget(self)
        return getattr(self._target, name)


class OnnxMaskDecoder(_Borrow):
    """`MaskDecoder` whose `predict_masks` is the mask_decoder graph (the mask choice is MaskDecoder's)."""

    _cls = MaskDecoder

    def __init__(self, target: MaskDecoder, graphs: Dict[int, Graph]) -> None:
        """graphs: the decoder graph for each feature-grid width (the model's own; a tracked region's)."""
        super().__init__(target)
        self.graphs = graphs

    def __call__(self, *args, **kwargs):
        return MaskDecoder.forward(self, *args, **kwargs)

    def predict_masks(self, image_embeddings, image_pe, sparse, dense, repeat_image, high_res_features):
        """All masks (B, K, 4h, 4w), IoU (B, K), mask tokens (B, K, C), object score (B, 1)."""
        b = sparse.shape[0]
        hr = list(high_res_features) if high_res_features is not None and self.use_high_res_features else []
        if repeat_image:
            image_embeddings = torch.repeat_interleave(image_embeddings, b, dim=0)
        elif image_embeddings.shape[0] != b:
            raise ValueError("image batch and prompt batch differ")
        hr = [x.expand(b, *x.shape[1:]) if x.shape[0] != b else x for x in hr]
        dense = dense.expand(b, *dense.shape[1:]) if dense.shape[0] != b else dense
        graph = self.graphs.get(int(image_embeddings.shape[-1]))
        if graph is None:
            raise ValueError(f"no mask-decoder graph for a {image_embeddings.shape[-1]}-wide feature grid "
                             f"(exported: {sorted(self.graphs)})")
        masks, iou, tokens, obj = graph(image_embeddings, image_pe, sparse, dense, *hr)
        return masks, iou, tokens, obj


class OnnxMemoryAttention:
    """`MemoryAttention.__call__` on the memory_attention graph (grid fixed at export)."""

    def __init__(self, graph: Graph, hw: Tuple[int, int]) -> None:
        self.graph, self.hw = graph, tuple(hw)

    def __call__(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens: int = 0,
                 hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """curr/curr_pos (B, HW, C); memory/memory_pos (B, N, M), pointer tokens last → (B, HW, C)."""
        if hw is not None and tuple(hw) != self.hw:
            raise ValueError(f"memory attention was exported for a {self.hw} grid, got {tuple(hw)}")
        n = memory.shape[1] - int(num_obj_ptr_tokens)
        (out,) = self.graph(curr, curr_pos, memory[:, :n], memory_pos[:, :n], memory[:, n:], memory_pos[:, n:])
        return out


class OnnxMemoryEncoder:
    """`MemoryEncoder.__call__` on the memory_encoder graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __call__(self, pix_feat: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """pix_feat (B, C, h, w), mask (B, 1, S, S) squashed → features, pos (B, M, h, w)."""
        feats, pos = self.graph(pix_feat, mask)
        return feats, pos


class OnnxSAM2(_Borrow):
    """A `SAM2Model` stand-in for the engine: ONNX graphs for the heavy modules, SAM2Model's glue around them."""

    _cls = SAM2Model

    def __init__(self, model: SAM2Model, graphs: Dict[str, Graph], manifest: dict, precision: str,
                 folder: Path) -> None:
        super().__init__(model)
        self.graphs, self.manifest, self.precision, self.folder = graphs, manifest, precision, folder
        grids = {model.cfg.feat_size: graphs["mask_decoder"]}
        region = region_input_size(model)
        if region is not None:
            grids[model.cfg.feat_size * region // model.cfg.image_size] = graphs[decoder_graph_name(region)]
        self.sam_mask_decoder = OnnxMaskDecoder(model.sam_mask_decoder, grids)
        if model.has_memory:
            self.memory_attention = OnnxMemoryAttention(graphs["memory_attention"],
                                                        manifest["graphs"]["memory_attention"]["grid_hw"])
            self.memory_encoder = OnnxMemoryEncoder(graphs["memory_encoder"])

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.precision == "fp32" else "onnxruntime-int8"

    @property
    def torch_model(self) -> SAM2Model:
        return self._target

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def training(self) -> bool:
        return False

    def eval(self) -> "OnnxSAM2":
        self._target.eval()
        return self

    def train(self, mode: bool = True) -> "OnnxSAM2":
        if mode:
            raise ValueError("the onnxruntime backend is for inference; train the PyTorch model")
        return self.eval()

    def condition_on_memory(self, feats: ImageFeatures, memories=(), obj_ptrs=(), ptr_tpos_max: int = 1,
                            memory_cache=None, **kwargs) -> torch.Tensor:
        """`SAM2Model.condition_on_memory` on the memory_attention graph → (B, C, h, w). A PyTorch
        key cache (`memory_cache`) has no counterpart in the graph: the plain path is taken."""
        return SAM2Model.condition_on_memory(self, feats, memories, obj_ptrs, ptr_tpos_max, **kwargs)

    def encode_image(self, images: torch.Tensor, num_frames: int = 1) -> ImageFeatures:
        """images (B, 3, S, S) normalised → ImageFeatures (no backbone_fpn: the engine does not use it)."""
        size = images.shape[-1]
        name = encoder_graph_name(num_frames, None if size == self.cfg.image_size else size)
        if name not in self.graphs:
            raise ValueError(f"no image-encoder graph for clips of {num_frames} frames in {self.folder}")
        vf, vp, *hr = self.graphs[name](images)
        return ImageFeatures(vf, vp, hr, [])

    def __repr__(self) -> str:
        return f"OnnxSAM2({self.cfg.name}, {self.precision}, {self.folder})"


# live sessions by (folder, precision, threads): sessions of the same export are shared
_SESSIONS: "OrderedDict[tuple, Dict[str, Graph]]" = OrderedDict()
_MAX_LIVE = 4


def _graphs(folder: Path, manifest: dict, precision: str, threads: int) -> Dict[str, Graph]:
    key = (str(folder.resolve()), precision, threads, manifest["weights_sha256"])
    if key not in _SESSIONS:
        out = {}
        for name, g in manifest["graphs"].items():
            file = g["file"] if precision == "fp32" else manifest["int8"][name]
            out[name] = Graph(folder / file, [i["name"] for i in g["inputs"]], threads)
        _SESSIONS[key] = out
        while len(_SESSIONS) > _MAX_LIVE:
            _SESSIONS.popitem(last=False)
    _SESSIONS.move_to_end(key)
    return _SESSIONS[key]


def _complete(folder: Path, manifest: Optional[dict], precision: str) -> bool:
    if manifest is None or manifest.get("format") != FORMAT:
        return False
    files = [g["file"] for g in manifest["graphs"].values()]
    if precision == "int8":
        if set(manifest.get("int8", {})) != set(manifest["graphs"]):
            return False
        files += list(manifest["int8"].values())
    return all((folder / f).is_file() for f in files)


def as_backend(model: Union[SAM2Model, OnnxSAM2], backend: str = "torch",
               onnx_dir: Optional[Union[str, os.PathLike]] = None) -> Union[SAM2Model, OnnxSAM2]:
    """The model to run the engine with: `model` itself for "torch", else an `OnnxSAM2`
    ("onnxruntime": fp32 graphs; "onnxruntime-int8": dynamic int8). `onnx_dir`: a folder written by
    `medmem export --onnx` (default: the cache, exported there on first use)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "torch":
        return model
    precision = "int8" if backend.endswith("-int8") else "fp32"
    if isinstance(model, OnnxSAM2):
        if model.precision == precision and onnx_dir is None:
            return model
        model = model.torch_model
    require_onnx("onnxruntime")
    if model.device.type != "cpu":
        raise ValueError("the onnxruntime backend runs on the CPU: build the model with device='cpu' (--device cpu)")
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError("the onnxruntime backend needs a float32 model")
    digest = weights_hash(model)
    if onnx_dir is not None:
        folder = Path(onnx_dir)
        manifest = read_manifest(folder)
        if manifest.get("weights_sha256") != digest:
            raise ValueError(f"{folder} was exported from other weights or config (weights hash "
                             f"{manifest.get('weights_sha256')}, this model {digest}); export this model again")
        if not _complete(folder, manifest, "fp32"):
            raise ValueError(f"{folder}: the export is incomplete or of another format; export it again")
        if precision == "int8" and not _complete(folder, manifest, "int8"):
            manifest = quantize_export(folder)
    else:
        folder = cache_root() / digest
        try:
            manifest = read_manifest(folder)
        except ValueError:
            manifest = None
        if not _complete(folder, manifest, "fp32"):
            manifest = export_onnx(model, folder)
        if precision == "int8" and not _complete(folder, manifest, "int8"):
            manifest = quantize_export(folder)
    graphs = _graphs(folder, manifest, precision, torch.get_num_threads())
    return OnnxSAM2(model.eval(), graphs, manifest, precision, folder)


__all__ = ["BACKENDS", "OnnxSAM2", "as_backend", "cache_root", "ONNX_EXTRA_HINT"]
