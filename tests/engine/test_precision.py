"""Precision names (engine/autocast.py) and the native-bf16 probe."""
from __future__ import annotations

import pytest
import torch

from medmem.engine import autocast as ac


def test_precision_names():
    assert ac.precision_dtype("auto") is None  # bf16 on CUDA (resolve_dtype), fp32 on the CPU
    assert ac.precision_name(torch.device("cpu"), ac.precision_dtype("auto")) == "fp32"
    assert ac.precision_dtype("fp32") is torch.float32
    assert ac.precision_name(torch.device("cpu"), ac.precision_dtype("fp32")) == "fp32"
    assert ac.precision_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        ac.precision_dtype("fp16")


def test_the_native_bf16_probe(monkeypatch):
    assert isinstance(ac.cpu_has_native_bf16(), bool)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert ac.cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not ac.cpu_has_native_bf16()
