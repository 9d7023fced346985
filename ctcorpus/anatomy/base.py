"""The segmenter interface and its result record.

Every backend (TotalSegmentator, the HU-threshold fallback) returns a :class:`Segmentation`: a
uint8 label map on the input's exact grid, the label table that names each value, and the
backend that produced it, so a mask never travels without its meaning or its provenance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np
import SimpleITK as sitk

from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import AnatomyError

#: Geometry tolerance (mm, direction cosines) below which two grids are the same grid.
GRID_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True)
class Segmentation:
    """A label map with its label table and source.

    Attributes
    ----------
    labels:
        uint8 SimpleITK image on the grid (size, spacing, origin, direction) of the segmented image.
    label_table:
        Label value -> structure name (TotalSegmentator class names or fallback names); 0 is background
        and is never listed.
    backend, version:
        What produced the mask, recorded as :attr:`source` (``threshold-1.2``,
        ``totalsegmentator-2.18.0-task298-weights3f9a0c1b2d4e``: package, task ids, weights fingerprint).

    Examples
    --------
    >>> seg = segment_volume(image, AnatomyConfig(backend="threshold"))  # doctest: +SKIP
    >>> seg.source, seg.mask("lung_left").sum()                          # doctest: +SKIP
    ('threshold-1.2', 81234)
    """

    labels: sitk.Image
    label_table: Mapping[int, str]
    backend: str
    version: str

    def __post_init__(self) -> None:
        if self.labels.GetPixelID() != sitk.sitkUInt8:
            raise AnatomyError(
                f"a label map must be uint8, got {self.labels.GetPixelIDTypeAsString()}",
                reason=QuarantineReason.SEGMENTATION_FAILED,
            )
        if any(not 0 < value < 256 for value in self.label_table):
            raise AnatomyError("label values must be 1..255", reason=QuarantineReason.SEGMENTATION_FAILED)
        object.__setattr__(self, "label_table", MappingProxyType(dict(sorted(self.label_table.items()))))

    @property
    def source(self) -> str:
        """Backend and version as one string: the ``mask_source`` / ``producer`` of every row."""
        return f"{self.backend}-{self.version}"

    def array(self) -> np.ndarray:
        """The label map as a (z, y, x) uint8 array (a copy)."""
        return sitk.GetArrayFromImage(self.labels)

    def mask(self, *structures: str) -> np.ndarray:
        """Boolean (z, y, x) mask of the union of the named structures (unknown names select nothing)."""
        values = [value for value, name in self.label_table.items() if name in structures]
        return np.isin(sitk.GetArrayViewFromImage(self.labels), values)


@runtime_checkable
class Segmenter(Protocol):
    """A long-lived segmentation backend: build it once (:func:`make_segmenter`), call it per volume."""

    @property
    def name(self) -> str:
        """Backend name (``threshold``, ``totalsegmentator``)."""
        ...

    @property
    def version(self) -> str:
        """Backend version, naming its model and weights (``2.18.0-task298-weights3f9a0c1b2d4e``)."""
        ...

    def segment(self, image: sitk.Image) -> Segmentation:
        """Segment one CT volume in HU; the result lies on ``image``'s grid."""
        ...


def label_map_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A uint8 SimpleITK image from a (z, y, x) array, with ``reference``'s geometry."""
    if array.shape != sitk.GetArrayViewFromImage(reference).shape:
        raise AnatomyError(
            f"label map shape {array.shape} does not match the image's {reference.GetSize()[::-1]}",
            reason=QuarantineReason.SEGMENTATION_FAILED,
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.uint8))
    image.CopyInformation(reference)
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tolerance``)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)
    )


def patient_matrix(image: sitk.Image) -> np.ndarray:
    """3x3 matrix taking an (x, y, z) index step to an LPS millimetre step (direction times spacing)."""
    return np.asarray(image.GetDirection(), dtype=float).reshape(3, 3) * np.asarray(image.GetSpacing())


def single_mask_source(sources: Iterable[str], table: str) -> str:
    """The one mask source of a table's rows (its ``producer``); several sources in one table are an error."""
    distinct = sorted(set(sources))
    if len(distinct) > 1:
        raise AnatomyError(f"{table} rows of one table come from several mask sources: {distinct}")
    return distinct[0] if distinct else ""
