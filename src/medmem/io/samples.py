"""Bundled sample data (inside the package, read with :mod:`importlib.resources`; nothing downloads).

=====================  ===============================================================
name                   file
=====================  ===============================================================
``mni152_t1``          MNI ICBM152 2009a symmetric T1 template, 2 mm (``assets/mni152_t1.nii.gz``)
``mni152_brain_mask``  its brain mask from the GM + WM maps (``assets/mni152_brain_mask.nii.gz``)
=====================  ===============================================================

Licence: ``assets/LICENSE_MNI152.txt`` (McConnell Brain Imaging Centre notice).
Built by ``scripts/make_sample.py``.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Dict, List

SAMPLES: Dict[str, str] = {
    "mni152_t1": "mni152_t1.nii.gz",
    "mni152_brain_mask": "mni152_brain_mask.nii.gz",
    "mni152_license": "LICENSE_MNI152.txt",
}


def list_samples() -> List[str]:
    """Names accepted by :func:`sample_path`."""
    return sorted(SAMPLES)


def sample_path(name: str) -> Path:
    """Filesystem path of a bundled sample, e.g. ``read_volume(sample_path("mni152_t1"))``.

    Raises ``KeyError`` for an unknown name and ``FileNotFoundError`` if the
    package was installed without its assets.
    """
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; available: {', '.join(list_samples())}")
    ref = resources.files("medmem").joinpath("assets", SAMPLES[name])
    path = Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(
            f"sample {name!r} is missing from the installation ({path}); reinstall medmem or run "
            "scripts/make_sample.py"
        )
    return path
