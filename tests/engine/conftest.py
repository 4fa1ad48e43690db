import numpy as np
import pytest
import torch

import medmem


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return medmem.build_model("test_tiny", device="cpu")


@pytest.fixture(scope="session")
def blob_volume():
    """(20, 48, 64) float volume with a bright ellipsoid in slices 4..15 and a second object."""
    z, y, x = np.mgrid[:20, :48, :64]
    v = np.zeros((20, 48, 64), np.float32)
    v[((z - 10) / 6.0) ** 2 + ((y - 22) / 12.0) ** 2 + ((x - 24) / 14.0) ** 2 < 1] = 1.0
    v[(y - 36) ** 2 + (x - 52) ** 2 < 36] = 0.6
    return v
