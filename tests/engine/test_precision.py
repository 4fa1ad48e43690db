"""Precision names (engine/autocast.py) and the native-bf16 probe."""
from __future__ import annotations

import pytest
import torch

from medmem.engine import autocast as ac


def test_precision_names():
    assert ac.precision_dtype("auto") is None  # resolve_dtype decides: fp32 on the CPU here (tests/conftest.py)
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


def test_the_amx_probe(monkeypatch):
    assert isinstance(ac.cpu_has_amx(), bool)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not ac.cpu_has_amx()  # AVX512-BF16 alone: auto stays fp32 (bf16 was slower there)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert ac.cpu_has_amx()


@pytest.fixture
def fresh_rule():
    ac._cpu_auto_bf16.cache_clear()
    yield
    ac._cpu_auto_bf16.cache_clear()


def test_auto_is_bf16_on_a_cpu_with_amx_and_fp32_elsewhere(monkeypatch, fresh_rule):
    cpu = torch.device("cpu")
    monkeypatch.setenv(ac.CPU_BF16_ENV, "auto")
    for native, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(ac, "cpu_has_amx", lambda native=native: native)
        ac._cpu_auto_bf16.cache_clear()
        assert ac.resolve_dtype(cpu, None) is want
        assert ac.precision_name(cpu, ac.precision_dtype("auto")) == ("bf16" if native else "fp32")
        # an explicit precision always wins over the rule
        assert ac.resolve_dtype(cpu, torch.float32) is None and ac.resolve_dtype(cpu, torch.bfloat16) is torch.bfloat16
    monkeypatch.delenv(ac.CPU_BF16_ENV)  # unset = auto
    monkeypatch.setattr(ac, "cpu_has_amx", lambda: True)
    ac._cpu_auto_bf16.cache_clear()
    assert ac.resolve_dtype(cpu, None) is torch.bfloat16


def test_the_environment_overrides_the_cpu_rule(monkeypatch, fresh_rule):
    cpu = torch.device("cpu")
    monkeypatch.setattr(ac, "cpu_has_amx", lambda: True)
    monkeypatch.setenv(ac.CPU_BF16_ENV, "0")
    assert ac.resolve_dtype(cpu, None) is None
    monkeypatch.setattr(ac, "cpu_has_amx", lambda: False)
    monkeypatch.setenv(ac.CPU_BF16_ENV, "1")
    assert ac.resolve_dtype(cpu, None) is torch.bfloat16
    assert ac.resolve_dtype(torch.device("mps"), None) is None  # the CPU rule is the CPU's only
    monkeypatch.setenv(ac.CPU_BF16_ENV, "sometimes")
    with pytest.raises(ValueError, match="MEDMEM_CPU_BF16 must be 0, 1 or auto, got 'sometimes'"):
        ac.resolve_dtype(cpu, None)
