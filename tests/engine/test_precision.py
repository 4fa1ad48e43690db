"""Precision names (engine/autocast.py): what "auto" means on which device and CPU."""
from __future__ import annotations

import pytest
import torch

from medmem.engine import autocast as ac


def test_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch):
    monkeypatch.setattr(ac, "cpu_has_native_bf16", lambda: True)
    assert ac.precision_dtype("auto") is torch.bfloat16
    assert ac.precision_dtype("auto", torch.device("cpu")) is torch.bfloat16
    assert ac.precision_dtype("fp32") is torch.float32
    monkeypatch.setattr(ac, "cpu_has_native_bf16", lambda: False)
    assert ac.precision_dtype("auto") is None  # fp32 on the CPU
    assert ac.precision_name(torch.device("cpu"), ac.precision_dtype("auto")) == "fp32"
    assert ac.precision_dtype("bf16") is torch.bfloat16  # asked for: bf16 even where it is emulated


def test_auto_on_cuda_is_left_to_the_device_rule(monkeypatch):
    monkeypatch.setattr(ac, "cpu_has_native_bf16", lambda: True)
    assert ac.precision_dtype("auto", torch.device("cuda")) is None  # resolve_dtype: bf16 where CUDA supports it
    with pytest.raises(ValueError, match="unknown precision"):
        ac.precision_dtype("fp16")


def test_the_probe_answers_a_bool():
    assert isinstance(ac.cpu_has_native_bf16(), bool)
