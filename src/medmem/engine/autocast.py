"""Mixed precision keyed on the device type: bf16 on CUDA by default, fp32 elsewhere unless asked."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


def resolve_dtype(device: torch.device, dtype: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """The autocast dtype to use: explicit `dtype`, else bf16 on CUDA (where supported), else None (fp32)."""
    if dtype is not None:
        return None if dtype == torch.float32 else dtype
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where torch's bf16 CPU kernels are fast;
    elsewhere bf16 is emulated and several times slower than fp32 (docs/speed.md, section 4)."""
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except (RuntimeError, AttributeError):
            continue
    return False


def precision_dtype(precision: str) -> Optional[torch.dtype]:
    """A precision name → the autocast dtype to ask for: "auto" None (bf16 on CUDA, fp32 on the CPU), "fp32"
    float32 (equal to the official predictor), "bf16" bfloat16, on the CPU as well: fast where the CPU has native
    bf16 (`cpu_has_native_bf16`; there the default model's Dice stays within 0.001 of fp32 at 0.76x the time,
    `benchmarks/results_precision_cpu_amx.json`), emulated and slow elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def precision_name(device: torch.device, dtype: Optional[torch.dtype]) -> str:
    """The precision a network on `device` asked for `dtype` runs in: "fp32", "bf16" or "fp16"."""
    dt = resolve_dtype(device, dtype)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dt, str(dt))


def autocast(device: torch.device, dtype: Optional[torch.dtype] = None):
    """`torch.autocast` for `device.type` with `resolve_dtype`; a no-op context for fp32."""
    dt = resolve_dtype(device, dtype)
    if dt is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dt)
