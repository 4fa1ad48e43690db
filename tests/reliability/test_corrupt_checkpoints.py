"""Checkpoints that are not checkpoints: truncated, random, zeroed, or carrying pickled code.

Each ends in one :class:`CheckpointError` line that names the file and says what is wrong;
`.pt` files are loaded with ``weights_only=True``, so pickled code never runs.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import medmem
from medmem.checkpoint import CheckpointError, read_state_dict

DAMAGE = ["cut:1", "cut:7", "cut:9", "cut:64", "cut:1/3", "cut:1/2", "cut:-64", "cut:-1", "random", "zeros"]


def _damaged(data: bytes, how: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if how == "random":
        return rng.bytes(len(data))
    if how == "zeros":
        return bytes(len(data))
    spec = how.split(":", 1)[1]
    if "/" in spec:
        a, b = (int(v) for v in spec.split("/"))
        return data[: len(data) * a // b]
    cut = int(spec)
    return data[:cut] if cut > 0 else data[:cut]


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_checkpoint_is_one_clear_error(tmp_path, tiny_weights, kind, how):
    src = tiny_weights[kind]
    path = tmp_path / f"damaged.{kind}"
    path.write_bytes(_damaged(src.read_bytes(), how, DAMAGE.index(how)))
    with pytest.raises(CheckpointError) as err:
        medmem.build_model("test_tiny", checkpoint=path, device="cpu")
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert "weights_only` set to `False`" not in msg  # never advise unpickling an untrusted file


def test_empty_and_missing_checkpoint(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match="empty.pt: the file is empty"):
        read_state_dict(empty)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.safetensors")


class _Payload:
    """A pickle that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch_zip", "plain_pickle"])
def test_pickled_code_is_never_run(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if container == "torch_zip":
        torch.save({"model": {"w": torch.zeros(2)}, "x": _Payload(str(marker))}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(_Payload(str(marker)), f)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    assert not marker.exists()
    assert "\n" not in str(err.value) and "evil.pt" in str(err.value)
    if container == "torch_zip":
        assert "pickled Python objects" in str(err.value) and "never runs pickled code" in str(err.value)


def test_safetensors_with_wrong_header_length_says_so(tmp_path, tiny_weights):
    data = bytearray(tiny_weights["safetensors"].read_bytes())
    data[:8] = (len(data) * 2).to_bytes(8, "little")
    path = tmp_path / "badlen.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="header length field says"):
        read_state_dict(path)
    assert os.path.getsize(path) == len(data)  # the input is never modified
