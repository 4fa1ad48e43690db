"""Mixed precision keyed on the device: by default bf16 on CUDA and on CPUs with AMX, fp32 elsewhere.

The one rule for every entry point (Python API, CLI, server, batches): `resolve_dtype`. On the CPU the default
("auto") is bf16 only where the CPU has AMX tiles (there the default model's Dice stays within 0.001 of fp32 at
0.76x the time, docs/speed.md section 6) and fp32 elsewhere: with AVX512-BF16 alone README command 1 took 1.5x
as long in bf16 (`benchmarks/results_precision_cli_avx512bf16/`), and without either bf16 is emulated. The
environment variable ``MEDMEM_CPU_BF16`` overrides that choice for "auto" on the CPU: ``0`` keeps fp32 (results
equal to the official predictor to 1e-4; the test suite sets it), ``1`` uses bf16 even where it is slower or
emulated, unset or ``auto`` probes the CPU. An explicit dtype (``--precision fp32|bf16``) always wins.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Optional

import torch

CPU_BF16_ENV = "MEDMEM_CPU_BF16"


def resolve_dtype(device: torch.device, dtype: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """The autocast dtype to use: explicit `dtype`, else bf16 on CUDA (where supported) and on a CPU with AMX
    (`cpu_auto_bf16`), else None (fp32)."""
    if dtype is not None:
        return None if dtype == torch.float32 else dtype
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_auto_bf16():
        return torch.bfloat16
    return None


def cpu_auto_bf16() -> bool:
    """Whether "auto" precision means bf16 on this CPU: `MEDMEM_CPU_BF16` (0 / 1 / auto), else whether the CPU
    has AMX (`cpu_has_amx`, probed once per process)."""
    return _cpu_auto_bf16(os.environ.get(CPU_BF16_ENV, "auto").strip().lower())


@functools.lru_cache(maxsize=None)
def _cpu_auto_bf16(setting: str) -> bool:
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("", "auto"):
        return cpu_has_amx()
    raise ValueError(f"{CPU_BF16_ENV} must be 0, 1 or auto, got {setting!r}")


PRECISIONS = ("auto", "fp32", "bf16")


def _cpu_probe(name: str) -> bool:
    """torch.cpu's capability probe `name` (e.g. "_is_amx_tile_supported"); False where torch lacks it or it fails."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe is not None and probe())
    except (RuntimeError, AttributeError):
        return False


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles, where torch's bf16 CPU kernels are faster than fp32 (docs/speed.md, §6)."""
    return _cpu_probe("_is_amx_tile_supported")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where torch's bf16 CPU kernels are fast;
    elsewhere bf16 is emulated and several times slower than fp32 (docs/speed.md, section 4)."""
    return cpu_has_amx() or _cpu_probe("_is_avx512_bf16_supported")


def precision_dtype(precision: str) -> Optional[torch.dtype]:
    """A precision name → the autocast dtype to ask for: "auto" None (`resolve_dtype`: bf16 on CUDA and on CPUs
    with AMX, fp32 on other CPUs), "fp32" float32 (equal to the official predictor), "bf16" bfloat16, on
    the CPU as well: fast with AMX (`cpu_has_amx`; there the default model's Dice stays within 0.001 of fp32 at
    0.76x the time, `benchmarks/results_precision_cpu_amx.json`), slower than fp32 per volume with AVX512-BF16
    alone, emulated and far slower without native bf16."""
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
