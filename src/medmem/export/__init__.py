"""ONNX export of the model's graphs and an onnxruntime backend behind the engine's model interface.

`export_onnx(model, dir)` writes the graphs + manifest; `as_backend(model, "onnxruntime")` gives the
object the engine runs with (`ImagePredictor(..., backend=...)`, `VolumeSession(..., backend=...)`).
onnx / onnxruntime are the optional extra `medmem[onnx]`, imported only when used.
"""
from .backend import BACKENDS, OnnxSAM2, as_backend, cache_root
from .onnx import OnnxUnavailable, export_onnx, quantize_export, read_manifest, weights_hash

__all__ = ["BACKENDS", "OnnxSAM2", "OnnxUnavailable", "as_backend", "cache_root", "export_onnx", "quantize_export",
           "read_manifest", "weights_hash"]
