"""Exceptions and warnings raised by :mod:`medmem.io`.

Every failure to read or write an image ends in one of these, with a message
that names the file and says what is wrong and what to do; raw library
tracebacks (SimpleITK, pydicom, imageio) are chained as ``__cause__``.
"""
from __future__ import annotations


class ImageReadError(ValueError):
    """An image, volume, video or DICOM series could not be read."""


class DicomSeriesError(ImageReadError):
    """A DICOM folder is ambiguous (several series) or inconsistent (gaps, duplicates)."""


class ImageWriteError(ValueError):
    """A mask or image could not be written (bad shape, unsupported format, would overwrite an input)."""


class PromptFileError(ValueError):
    """A prompt file (JSON) is invalid; the message names the object and prompt."""


class GeometryWarning(UserWarning):
    """Geometry was repaired or guessed (uneven slices, near-orthonormal direction, missing tags)."""


class NonFiniteWarning(UserWarning):
    """NaN / inf voxels were replaced on reading (the message says how many and by what)."""
