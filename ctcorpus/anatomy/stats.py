"""Per-structure statistics of a segmentation: the ``anatomy_stats`` table.

One row per volume and structure present: voxel count, volume, bounding box in index and patient
(LPS mm) coordinates, head-foot extent, mean HU, the taxonomy region and the mask source. The
bounding boxes are what :mod:`ctcorpus.anatomy.regions` turns into weak localization targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import pyarrow as pa
import SimpleITK as sitk
from scipy import ndimage

from ctcorpus.anatomy.base import Segmentation, patient_matrix, same_grid, single_mask_source
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import AnatomyError
from ctcorpus.schemas import table_from_rows
from ctcorpus.taxonomy import Anatomy, anatomy_of_structure
from ctcorpus.version import __version__


@dataclass(frozen=True, slots=True)
class StructureStats:
    """One structure of one volume (a row of ``anatomy_stats``).

    Index boxes are ``(x, y, z)`` voxel indices, inclusive; mm boxes are the LPS extremes of the
    index box's voxel centres; ``z_extent_mm`` adds one voxel's head-foot size (the slice step on an
    axial grid, the row step on a coronal one) so a structure one voxel thick has that thickness.
    """

    volume_id: str
    structure: str
    label: int
    voxels: int
    volume_ml: float
    bbox_index_min: tuple[int, int, int]
    bbox_index_max: tuple[int, int, int]
    bbox_mm_min: tuple[float, float, float]
    bbox_mm_max: tuple[float, float, float]
    z_min_mm: float
    z_max_mm: float
    z_extent_mm: float
    mean_hu: float
    anatomy: Anatomy
    mask_source: str


def structure_stats(segmentation: Segmentation, hu_image: sitk.Image, volume_id: str) -> list[StructureStats]:
    """Statistics of every labelled structure present in ``segmentation``, in label order.

    Parameters
    ----------
    segmentation:
        Label map and label table (e.g. from :func:`~ctcorpus.anatomy.segment_volume`).
    hu_image:
        The CT in HU on the same grid (resample the mask with :func:`~ctcorpus.anatomy.resample_mask`
        first if needed): a mismatch raises rather than silently misplacing statistics.
    volume_id:
        The volume's id, copied into every row.

    Examples
    --------
    >>> rows = structure_stats(seg, ct, "vol-001")            # doctest: +SKIP
    >>> [(r.structure, round(r.volume_ml)) for r in rows][:2]  # doctest: +SKIP
    [('body', 20512), ('lung_left', 1480)]
    """
    if not same_grid(segmentation.labels, hu_image):
        raise AnatomyError(
            f"volume {volume_id}: the mask grid {segmentation.labels.GetSize()} / {segmentation.labels.GetSpacing()} "
            f"differs from the HU image's {hu_image.GetSize()} / {hu_image.GetSpacing()}; resample the mask first",
            reason=QuarantineReason.SEGMENTATION_FAILED,
        )
    labels = sitk.GetArrayViewFromImage(segmentation.labels)
    hu = sitk.GetArrayViewFromImage(hu_image)
    matrix = patient_matrix(hu_image)
    origin = np.asarray(hu_image.GetOrigin(), dtype=float)
    voxel_ml = abs(float(np.linalg.det(matrix))) / 1000.0
    voxel_z_mm = float(np.abs(matrix[2]).sum())  # head-foot size of one voxel, whichever index axis runs so
    boxes = ndimage.find_objects(labels)
    rows = []
    for label, structure in segmentation.label_table.items():
        box = boxes[label - 1] if label - 1 < len(boxes) else None
        if box is None:
            continue
        inside = labels[box] == label
        index_min = np.array([box[2].start, box[1].start, box[0].start])
        index_max = np.array([box[2].stop, box[1].stop, box[0].stop]) - 1
        corners = np.array([origin + matrix @ np.where(c, index_max, index_min) for c in product((0, 1), repeat=3)])
        mm_min, mm_max = corners.min(axis=0), corners.max(axis=0)
        voxels = int(np.count_nonzero(inside))
        rows.append(
            StructureStats(
                volume_id=volume_id,
                structure=structure,
                label=int(label),
                voxels=voxels,
                volume_ml=voxels * voxel_ml,
                bbox_index_min=tuple(int(v) for v in index_min),
                bbox_index_max=tuple(int(v) for v in index_max),
                bbox_mm_min=tuple(float(v) for v in mm_min),
                bbox_mm_max=tuple(float(v) for v in mm_max),
                z_min_mm=float(mm_min[2]),
                z_max_mm=float(mm_max[2]),
                z_extent_mm=float(mm_max[2] - mm_min[2]) + voxel_z_mm,
                mean_hu=float(hu[box][inside].mean(dtype=np.float64)),
                anatomy=anatomy_of_structure(structure),
                mask_source=segmentation.source,
            )
        )
    return rows


def anatomy_stats_table(stats: Sequence[StructureStats], source_sha256: str) -> pa.Table:
    """The ``anatomy_stats`` table of one volume's rows, with provenance (producer = mask source).

    >>> table = anatomy_stats_table(rows, source_sha256=volume_sha)   # doctest: +SKIP
    """
    return table_from_rows(
        "anatomy_stats",
        stats,
        pipeline_version=__version__,
        source_sha256=source_sha256,
        producer=single_mask_source((row.mask_source for row in stats), "anatomy_stats"),
    )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty).

    >>> dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool))
    0.6666666666666666
    """
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
