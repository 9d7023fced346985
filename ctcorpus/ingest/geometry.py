"""Slice geometry: normals, positions along the normal, spacing and tilt checks.

Slices are ordered by the projection of ImagePositionPatient on the slice normal (the cross
product of the row and column cosines), never by file name or InstanceNumber: both lie in real
exports (the TotalSegmentator reference series runs opposite to its instance numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.ingest.records import Finding, InstanceRecord, Vec3


def plane_axes(orientation: tuple[float, ...]) -> np.ndarray:
    """Orthonormal row, column and normal axes (the columns of a 3x3 matrix) of a slice plane.

    DICOM's cosines are orthogonal unit vectors by definition, but files hold them rounded or noisy,
    and discovery accepts them up to 0.01 off in squared length and dot product (header._placeable):
    used as written, a row of length 1.004 stretched a 358 mm wide image by 1.4 mm, and a column
    0.5 degrees off orthogonal sheared it. The row is kept (made unit length), the normal is row x
    column (DICOM's right-handed convention) and the column normal x row: the written column made
    orthogonal to the row.
    """
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise ValueError(f"ImageOrientationPatient {orientation} has parallel row and column cosines")
    row = row / np.linalg.norm(row)
    normal = normal / norm
    return np.column_stack([row, np.cross(normal, row), normal])


def slice_normal(orientation: tuple[float, ...]) -> Vec3:
    """Unit normal of a slice: row cosines x column cosines (DICOM's right-handed convention)."""
    return tuple(float(v) for v in plane_axes(orientation)[:, 2])  # type: ignore[return-value]


def slice_centre(record: InstanceRecord) -> Vec3:
    """The patient position (LPS mm) of an image's centre.

    ImagePositionPatient is the first pixel's; in a tilted image the centre lies tens of mm of z
    away from it (20 degrees over a 250 mm field of view: 43 mm), and an image of a reformat is no
    axial position at all.
    """
    assert record.position is not None and record.orientation is not None and record.pixel_spacing is not None
    axes = plane_axes(record.orientation)
    row_spacing, column_spacing = record.pixel_spacing  # between rows (along col), between columns (along row)
    centre = (np.asarray(record.position, float) + axes[:, 0] * column_spacing * (record.columns - 1) / 2
              + axes[:, 1] * row_spacing * (record.rows - 1) / 2)
    return tuple(float(v) for v in centre)  # type: ignore[return-value]


#: Orientations whose cosines all differ by at most this are one plane (1e-3 ~ 0.06 degrees).
SAME_ORIENTATION = 1e-3


def orientation_clusters(orientations: Sequence[tuple[float, ...]]) -> list[int]:
    """The plane each orientation belongs to (0, 1, ...): the first plane whose first orientation
    it is within ``SAME_ORIENTATION`` of, else a new one.

    Float noise must not split a stack, and rounding to a grid does where the noise straddles a
    grid line (0.9995 +- 1e-6 rounds to 0.999 and 1.0: two stacks of every other slice).
    """
    anchors: list[tuple[float, ...]] = []
    planes = []
    for orientation in orientations:
        plane = next((k for k, anchor in enumerate(anchors)
                      if max(abs(a - b) for a, b in zip(anchor, orientation, strict=True)) <= SAME_ORIENTATION), None)
        if plane is None:
            plane = len(anchors)
            anchors.append(orientation)
        planes.append(plane)
    return planes


def stacking_vector(positions: np.ndarray) -> np.ndarray:
    """Mean step between consecutive sorted slice positions (mm, LPS)."""
    if len(positions) < 2:
        return np.zeros(3)
    return (positions[-1] - positions[0]) / (len(positions) - 1)


def tilt_degrees(normal: Vec3, positions: np.ndarray) -> float:
    """Angle between the slice normal and the direction the slices are stacked in (0 = no tilt)."""
    step = stacking_vector(positions)
    length = float(np.linalg.norm(step))
    if length < 1e-9:
        return 0.0
    cosine = abs(float(np.dot(step / length, normal)))
    return math.degrees(math.acos(min(1.0, cosine)))


def policy_action(config: IngestConfig, reason: QuarantineReason) -> Action:
    """The configured action for a stack defect."""
    policy = config.policy
    return {
        QuarantineReason.MISSING_SLICES: policy.missing_slices,
        QuarantineReason.NON_UNIFORM_SPACING: policy.non_uniform_spacing,
        QuarantineReason.GANTRY_TILT: policy.gantry_tilt,
        QuarantineReason.DUPLICATE_SLICE: policy.duplicate_slice,
        QuarantineReason.TOO_FEW_SLICES: policy.too_few_slices,
        QuarantineReason.SINGLE_SLICE: policy.too_few_slices,
        QuarantineReason.INCONSISTENT_RESCALE: policy.inconsistent_rescale,
    }.get(reason, Action.ACCEPT)


def finding(config: IngestConfig, reason: QuarantineReason, detail: str, value: float = 0.0, path: str = "") -> Finding:
    """A :class:`Finding` with the action the policy assigns to ``reason``."""
    return Finding(reason, detail, policy_action(config, reason), value, path)


def spacing_findings(steps: np.ndarray, config: IngestConfig) -> tuple[Finding, ...]:
    """Missing-slice and non-uniform-spacing findings from the sorted slice steps (mm)."""
    if len(steps) == 0:
        return ()
    median = float(np.median(steps))
    findings: list[Finding] = []
    gaps = steps > config.gap_factor * median
    if gaps.any():
        worst = float(steps.max())
        findings.append(
            finding(
                config,
                QuarantineReason.MISSING_SLICES,
                f"{int(gaps.sum())} gap(s) up to {worst:.3f} mm in a stack with a median step of {median:.3f} mm "
                f"(about {round(worst / median) - 1} slice(s) missing)",
                worst,
            )
        )
    deviation = np.abs(steps - median)
    irregular = (deviation > config.spacing_tolerance_mm) & ~gaps
    if irregular.any():
        findings.append(
            finding(
                config,
                QuarantineReason.NON_UNIFORM_SPACING,
                f"slice steps range {float(steps.min()):.3f}-{float(steps.max()):.3f} mm around a median of {median:.3f} mm",
                float(deviation.max()),
            )
        )
    return tuple(findings)


def covering_grid(image: sitk.Image, direction: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size, origin) of a grid with axes ``direction`` (columns) and ``spacing`` whose voxels hold
    every voxel centre of ``image``: used to untilt stacks and to resample onto the corpus grid.

    The grid is centred on the extent: the part of a voxel that does not fit is split between the
    two ends. Anchored at the low end, a 41.8 mm stack resampled at 1.5 mm ended 1.3 mm short of
    its last slice, which kept 41% of its HU where the first slice kept all of it.
    """
    size = np.array(image.GetSize())
    corners = [[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    physical = np.array([image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]) for corner in corners])
    local = physical @ direction
    low, high = local.min(axis=0), local.max(axis=0)
    out_size = np.floor((high - low) / spacing + 1e-6).astype(int) + 1
    margin = np.maximum(high - low - (out_size - 1) * spacing, 0.0) / 2
    return out_size, direction @ (low + margin)
