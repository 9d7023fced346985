"""Series-level building blocks shared by the export generator and the defect seeders.

A :class:`StudyContext` holds one study's identity, phantom and primary geometry; the functions
here turn a stack of HU images plus slice placements into files with PACS-like names and into the
:class:`~ctcorpus.synth.truth.SeriesTruth` that states what SimpleITK must read from them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcorpus.synth.dicom import SeriesHeader, SlicePlacement, uid, write_series
from ctcorpus.synth.phantom import Phantom
from ctcorpus.synth.truth import SeriesTruth

__all__ = [
    "StudyContext",
    "file_names",
    "instance_numbers",
    "reslice",
    "series_header",
    "series_truth",
    "write_stack",
]


@dataclass(frozen=True, slots=True)
class StudyContext:
    """One study: who, when, which scanner, its phantom and the primary series' z grid."""

    root: Path  # export root
    index: int  # study index within the export (0-based)
    layout: int  # 0: PAT_x/STUDY_y/SE0003/IM00017, 1: DICOM/hex/hex/hex/hex
    patient_id: str
    patient_name: str
    birth_date: str  # written to the header only when PHI is seeded
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession_number: str
    frame_of_reference_uid: str
    manufacturer: str
    model: str
    phantom: Phantom
    z_mm: tuple[float, ...]  # primary slice z positions, ascending
    extra: tuple[tuple[str, str], ...] = ()  # header PHI (keyword, value)
    header_birth_date: str = ""
    requested_accession_numbers: tuple[str, ...] = ()  # RequestAttributesSequence (a group case)


def series_header(
    ctx: StudyContext,
    series_number: int,
    description: str,
    kernel: str,
    thickness_mm: float,
    pixel_mm: float,
    **overrides: object,
) -> SeriesHeader:
    """The header of a new series in ``ctx``'s study; its UID derives from study and number."""
    header = SeriesHeader(
        patient_id=ctx.patient_id,
        patient_name=ctx.patient_name,
        birth_date=ctx.header_birth_date,
        sex=ctx.sex,
        study_uid=ctx.study_uid,
        study_date=ctx.study_date,
        study_time=ctx.study_time,
        accession_number=ctx.accession_number,
        series_uid=uid(ctx.study_uid, "series", series_number),
        series_number=series_number,
        series_description=description,
        frame_of_reference_uid=ctx.frame_of_reference_uid,
        kernel=kernel,
        manufacturer=ctx.manufacturer,
        model=ctx.model,
        slice_thickness_mm=thickness_mm,
        pixel_spacing_mm=(pixel_mm, pixel_mm),
        extra=ctx.extra,
        requested_accession_numbers=ctx.requested_accession_numbers,
    )
    return dataclasses.replace(header, **overrides) if overrides else header


def instance_numbers(n: int, head_first: bool) -> list[int]:
    """InstanceNumbers for ``n`` slices listed z ascending.

    ``head_first`` scanners number from the top (instance 1 = highest z), so z runs opposite to
    the instance number; others number from the feet.
    """
    return [n - k for k in range(n)] if head_first else [k + 1 for k in range(n)]


def file_names(ctx: StudyContext, series_number: int, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` relative file paths whose lexical order is NOT the slice order (as PACS exports do).

    Layout 0 numbers files ``IM00001``.. in a shuffled order inside ``PAT_/STUDY_/SE####``;
    layout 1 uses hashed 8-hex names in a DICOMDIR-like ``DICOM/`` tree.
    """
    if ctx.layout == 0:
        folder = f"PAT_{ctx.patient_id}/STUDY_{ctx.accession_number}/SE{series_number:04d}"
        numbers = rng.permutation(n) + 1 + int(rng.integers(0, 50))
        return [f"{folder}/IM{int(v):05d}" for v in numbers]

    def hexname(*parts: object) -> str:
        return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8].upper()

    folder = "/".join(
        ("DICOM", hexname(ctx.patient_id), hexname(ctx.study_uid), hexname(ctx.study_uid, series_number))
    )
    return [f"{folder}/{hexname(ctx.study_uid, series_number, k)}" for k in range(n)]


def write_stack(
    ctx: StudyContext,
    header: SeriesHeader,
    images: np.ndarray,
    placements: Sequence[SlicePlacement],
    names: Sequence[str],
) -> None:
    """Write one file per image (``images[k]`` at ``placements[k]`` named ``names[k]``)."""
    write_series(header, images, placements, [ctx.root / name for name in names])


def _parsed(value: float) -> float:
    """The float a reader gets back from the DS string the writer stores (see ``dicom._ds``)."""
    return float(f"{value:.6f}")


def series_truth(
    ctx: StudyContext,
    header: SeriesHeader,
    kind: str,
    names: Sequence[str],
    placements: Sequence[SlicePlacement],
    shape_yx: tuple[int, int],
    *,
    label_map: str = "",
    expected_reasons: tuple[str, ...] = (),
    defect: str = "",
) -> SeriesTruth:
    """What a reader must find in a stack written z ascending (``placements`` sorted by z).

    Direction is SimpleITK's: columns are the row direction, the column direction and their cross
    product (the slice normal); spacing along the normal is the first inter-slice step projected
    on it (the tilted stack's true plane spacing).
    """
    orientation = np.array([_parsed(v) for v in placements[0].orientation])
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    positions = np.array([[_parsed(v) for v in p.position_mm] for p in placements])
    step = float(np.dot(positions[1] - positions[0], normal)) if len(positions) > 1 else 1.0
    direction = np.column_stack([row, col, normal]).ravel()
    return SeriesTruth(
        patient_id=ctx.patient_id,
        study_uid=ctx.study_uid,
        series_uid=header.series_uid,
        series_number=header.series_number,
        kind=kind,
        frame_of_reference_uid=header.frame_of_reference_uid,
        files=tuple(names),
        rows=int(shape_yx[0]),
        columns=int(shape_yx[1]),
        n_slices=len(names),
        spacing_mm=(_parsed(header.pixel_spacing_mm[1]), _parsed(header.pixel_spacing_mm[0]), round(step, 6)),
        origin_mm=tuple(float(v) for v in positions[0]),
        direction=tuple(round(float(v), 9) + 0.0 for v in direction),
        slice_thickness_mm=_parsed(header.slice_thickness_mm),
        kernel=header.kernel,
        instance_numbers=tuple(p.instance_number for p in placements),
        z_mm=tuple(float(p[2]) for p in positions),
        transfer_syntax=str(header.transfer_syntax),
        label_map=label_map,
        expected_reasons=expected_reasons,
        defect=defect,
    )


def reslice(volume: np.ndarray, z_src: Sequence[float], z_dst: Sequence[float], thickness_mm: float) -> np.ndarray:
    """Images at ``z_dst`` from a z-ascending stack at ``z_src``, with a triangular slice profile.

    The profile's half-width is ``max(thickness, source spacing)``: a thin target interpolates
    linearly between source slices, a thick one averages several — how a second reconstruction
    of the same acquisition looks. Integer volumes come back in their own dtype (rounded).
    """
    src = np.asarray(z_src, dtype=np.float64)
    width = max(float(thickness_mm), float(np.min(np.diff(src))) if len(src) > 1 else 1.0)
    out = np.empty((len(z_dst),) + volume.shape[1:], dtype=volume.dtype)
    for t, z in enumerate(z_dst):
        weights = np.clip(1.0 - np.abs(src - z) / width, 0.0, None)
        if weights.sum() == 0:  # outside the source range: nearest slice
            weights[int(np.argmin(np.abs(src - z)))] = 1.0
        idx = np.flatnonzero(weights)
        acc = sum(float(w) * volume[i].astype(np.float32) for i, w in zip(idx, weights[idx] / weights[idx].sum()))
        out[t] = np.rint(acc) if np.issubdtype(volume.dtype, np.integer) else acc
    return out
