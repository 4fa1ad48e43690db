"""Fixtures for the io tests (helpers live in io_testutils.py)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def ct_array() -> np.ndarray:
    """(8, 16, 16) int16 HU with a bright 'organ' and distinct values per slice."""
    z, y, x = np.mgrid[0:8, 0:16, 0:16]
    hu = (-1000 + 10 * z + 2 * y + x).astype(np.int16)
    hu[2:6, 4:12, 5:11] = 60 + z[2:6, 4:12, 5:11]
    return hu
