"""Fixtures for the server tests: the bundled model, live servers on free loopback ports."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from server_live import blob_volume, start_server  # noqa: E402


@pytest.fixture(scope="session")
def model():
    from medmem.server.models import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A --data folder with one small synthetic volume (a bright ellipsoid)."""
    from medmem.io import Volume, write_volume

    d = tmp_path_factory.mktemp("data")
    write_volume(Volume(blob_volume(), spacing=(1.5, 1.5, 2.0)), d / "blob.nii.gz")
    return d


@pytest.fixture(scope="session")
def server(model, tmp_path_factory, data_dir):
    """The default server (loopback, no token), shared by the API, MONAI Label and browser tests."""
    s = start_server(model, tmp_path_factory.mktemp("srv"), data_dir=data_dir)
    yield s
    s.stop()
