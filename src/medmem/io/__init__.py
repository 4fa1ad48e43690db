"""medmem.io — reading, writing and locating medical images, masks and prompts.

Conventions (see ``docs/io.md``):

* ``Volume.array`` is ``(Z, Y, X)`` (grayscale) or ``(Z, Y, X, C)`` (RGB); a 2D
  image has Z = 1, a video Z = number of frames.
* ``spacing`` and ``origin`` are ITK physical order ``(x, y, z)`` in mm, in LPS
  world space; ``direction`` is 3x3, column i = world direction of index axis i.
* Voxel indices are ``(x, y, z)`` = (column, row, slice): ``array[z, y, x]``.
* Prompts in voxels use x = column, y = row, slice = index along the slicing
  axis of :meth:`Volume.slices`; mm prompts are converted once, on loading.
"""
from .dicom import describe_series, scan_dicom_folder
from .errors import (
    DicomSeriesError,
    GeometryWarning,
    ImageReadError,
    ImageWriteError,
    NonFiniteWarning,
    PromptFileError,
)
from .geometry import (
    Geometry,
    anatomical_axes,
    array_axis_for,
    orientation_code,
    voxel_to_world,
    world_to_voxel,
)
from .prompts import (
    Box3DPrompt,
    BoxPrompt,
    MaskPrompt,
    ObjectPrompts,
    PointsPrompt,
    Prompt,
    load_prompts,
    prompts_to_dict,
    rle_decode,
    rle_encode,
    save_prompts,
)
from .readers import read_volume
from .samples import list_samples, sample_path
from .volume import SliceView, Volume
from .writers import write_mask, write_volume

__all__ = [
    "Volume",
    "SliceView",
    "Geometry",
    "read_volume",
    "write_mask",
    "write_volume",
    "voxel_to_world",
    "world_to_voxel",
    "anatomical_axes",
    "array_axis_for",
    "orientation_code",
    "scan_dicom_folder",
    "describe_series",
    "load_prompts",
    "save_prompts",
    "prompts_to_dict",
    "ObjectPrompts",
    "Prompt",
    "BoxPrompt",
    "Box3DPrompt",
    "PointsPrompt",
    "MaskPrompt",
    "rle_encode",
    "rle_decode",
    "sample_path",
    "list_samples",
    "ImageReadError",
    "DicomSeriesError",
    "ImageWriteError",
    "PromptFileError",
    "GeometryWarning",
    "NonFiniteWarning",
]
