"""Series splitting: turn usable instances into stacks of parallel slices, with geometry findings.

A SeriesInstanceUID may hold several stacks (two reconstructions, a second acquisition, a
different matrix, reformats in other planes), and some exports have empty UIDs. Instances are
grouped by study, series (folder when the UID is empty), frame of reference, matrix, pixel
spacing, reconstruction kernel, slice thickness and orientation (within a tolerance); a slice without
a SliceThickness joins the one group it otherwise fits (:func:`_thickness_filled`); a group whose
positions repeat, or whose acquisitions interleave, is split by AcquisitionNumber when that
separates it into duplicate-free stacks.
Localizers never get here (discovery excludes them). The stacks of a StudyInstanceUID that the
images of several patients carry are rejected (:func:`_patients_per_study`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.ingest.geometry import finding, orientation_clusters, slice_normal, spacing_findings, tilt_degrees
from ctcorpus.ingest.records import ExportIndex, Finding, InstanceRecord, Stack
from ctcorpus.pseudonym import patient_key

log = logging.getLogger(__name__)

#: Positions closer than this along the normal (mm) are the same slice position.
SAME_POSITION_MM = 0.01


def _group_key(record: InstanceRecord) -> tuple[object, ...]:
    """What the instances of one stack share, but the orientation (see _by_orientation).

    Two reconstructions of a scan in one series differ in kernel or thickness, not always in
    position: a lung and a soft-tissue kernel at the same positions are no duplicates, and 1 and
    5 mm slices at interleaved positions no stack of non-uniform spacing.
    """
    assert record.pixel_spacing is not None
    series = record.series_uid or f"folder:{os.path.dirname(record.rel_path)}"
    return (
        record.study_uid,
        series,
        record.frame_of_reference_uid,
        record.rows,
        record.columns,
        tuple(round(v, 4) for v in record.pixel_spacing),
        record.kernel,
        None if record.slice_thickness is None else round(record.slice_thickness, 3),
    )


def _thickness_filled(groups: dict[tuple[object, ...], list[InstanceRecord]]) -> dict[tuple[object, ...], list[InstanceRecord]]:
    """``groups`` with each group of slices without a SliceThickness (Type 2: an export may leave it
    empty, or write 0, in a few files) merged into the one group that differs from it in thickness alone, its
    slices given that thickness. Alone, each such slice was a one-slice stack, and the series it
    left had a gap: both rejected. Where two reconstructions of other thickness could take it, it
    stays apart."""
    out = dict(groups)
    for key in [k for k in groups if k[-1] is None]:
        fits = [k for k in groups if k[:-1] == key[:-1] and k[-1] is not None]
        if len(fits) == 1:
            (into,) = fits
            records = out.pop(key)
            out[into] = [*out[into], *(dataclasses.replace(r, slice_thickness=float(into[-1])) for r in records)]
            log.warning("SliceThickness empty or not above 0 files=%d first=%s: read as the %s mm of the rest of their series",
                        len(records), min(r.rel_path for r in records), into[-1])
    return out


def _by_orientation(records: list[InstanceRecord]) -> list[list[InstanceRecord]]:
    """The records of each plane (reformats of one series in other planes are other stacks)."""
    planes: dict[int, list[InstanceRecord]] = defaultdict(list)
    for record, plane in zip(records, orientation_clusters([r.orientation or () for r in records]), strict=True):
        planes[plane].append(record)
    return list(planes.values())


def _projection(records: Sequence[InstanceRecord], normal: tuple[float, float, float]) -> np.ndarray:
    positions = np.array([r.position for r in records], dtype=float)
    return positions @ np.asarray(normal)


def _has_repeats(along: np.ndarray) -> bool:
    ordered = np.sort(along)
    return bool(len(ordered) > 1 and (np.diff(ordered) < SAME_POSITION_MM).any())


def _median_step(along: np.ndarray) -> float:
    return float(np.median(np.diff(np.sort(along))))


def _split_by_acquisition(records: list[InstanceRecord], along: np.ndarray, gap_factor: float) -> list[list[InstanceRecord]]:
    """Split by AcquisitionNumber where no acquisition alone repeats a position and either the
    positions repeat, or the acquisitions interleave: each alone steps more than ``gap_factor`` x
    the median step of all of them (two phases offset by half a step read as one stack of twice
    the resolution, every other slice from the other phase, and nothing found). Acquisitions one
    after another along the normal (step-and-shoot) step as the whole does and stay one stack."""
    by_acquisition: dict[int | None, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_acquisition[record.acquisition_number].append(i)
    parts = list(by_acquisition.values())
    if len(parts) < 2 or any(_has_repeats(along[idx]) for idx in parts):
        return [records]
    interleaved = all(len(idx) > 1 for idx in parts) and min(_median_step(along[idx]) for idx in parts) > gap_factor * _median_step(along)
    if not (_has_repeats(along) or interleaved):
        return [records]
    return [[records[i] for i in idx] for _, idx in sorted(by_acquisition.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]


def stack_key(records: Sequence[InstanceRecord]) -> str:
    """A stable key of a stack: sha256 of its sorted slice ids (SOP instance UIDs, paths when UIDs
    are empty, with the frame number of a multi-frame file's frame)."""
    names = sorted(r.slice_id for r in records)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _patients_per_study(records: Sequence[InstanceRecord], zeros: str) -> dict[str, Finding]:
    """The rejecting finding of each StudyInstanceUID whose images carry more than one PatientID
    (as pseudonyms key them under ``ingest.patient_id_zeros``), naming a file of each patient.

    A study is one unit of one patient downstream (its patient's pseudonym and split, its report):
    an export tool or PACS that reuses a study UID for another patient gave the second patient's
    volumes the first one's id, or left them out as "not selected", unseen. Which images are whose
    study no header says, so the study's stacks are rejected (a study without PatientID is
    :attr:`~ctcorpus.enums.QuarantineReason.MISSING_PATIENT_ID` elsewhere)."""
    files: dict[str, dict[str, str]] = defaultdict(dict)  # study uid -> patient -> its first file
    for record in sorted(records, key=lambda r: r.rel_path):
        if record.patient_id.strip():  # studies with an empty UID are one unit downstream, too
            key = patient_key(record.patient_id) if zeros == "strip" else record.patient_id
            files[record.study_uid].setdefault(key, record.rel_path)
    return {
        study: Finding(QuarantineReason.PATIENT_MISMATCH,
                       f"its StudyInstanceUID{'' if study else ' (empty)'} is carried by the images of {len(patients)} patients (first files: "
                       f"{', '.join(sorted(patients.values()))}); which are whose study no header says: export each "
                       "patient's study with its own StudyInstanceUID", Action.REJECT, len(patients))
        for study, patients in files.items() if len(patients) > 1
    }


def _make_stack(records: list[InstanceRecord], config: IngestConfig, split_from: int, shared_study: Finding | None) -> Stack:
    assert records[0].orientation is not None
    normal = slice_normal(records[0].orientation)
    along = _projection(records, normal)
    order = np.argsort(along, kind="stable")
    kept: list[InstanceRecord] = []
    kept_along: list[float] = []
    duplicates: list[InstanceRecord] = []
    for i in order:
        if kept_along and along[i] - kept_along[-1] < SAME_POSITION_MM:
            duplicates.append(records[i])
        else:
            kept.append(records[i])
            kept_along.append(float(along[i]))
    findings: list[Finding] = []
    n = len(kept)
    if n == 1:
        findings.append(finding(config, QuarantineReason.SINGLE_SLICE, "the stack is a single slice; a volume needs a stack"))
    elif n < config.min_slices:
        findings.append(finding(config, QuarantineReason.TOO_FEW_SLICES, f"{n} slices, fewer than ingest.min_slices={config.min_slices}", n))
    findings.extend(
        finding(config, QuarantineReason.DUPLICATE_SLICE, f"{extra.rel_path} repeats the position of another slice", 1, extra.rel_path)
        for extra in duplicates
    )
    if n >= 2:
        steps = np.diff(np.asarray(kept_along))
        findings.extend(spacing_findings(steps, config))
        positions = np.array([r.position for r in kept], dtype=float)
        tilt = tilt_degrees(normal, positions)
        if tilt > config.tilt_tolerance_deg:
            findings.append(finding(config, QuarantineReason.GANTRY_TILT, f"gantry tilt of {tilt:.2f} degrees", tilt))
    rescales = {(r.rescale_slope, r.rescale_intercept) for r in kept}
    if len(rescales) > 1:
        findings.append(
            finding(config, QuarantineReason.INCONSISTENT_RESCALE, f"{len(rescales)} different rescale slope/intercept pairs (applied per slice)", len(rescales))
        )
    if shared_study is not None:
        findings.append(shared_study)
    if split_from > 1:
        findings.append(
            Finding(QuarantineReason.MIXED_STACKS, f"series holds {split_from} stacks; this is one of them", Action.ACCEPT, split_from)
        )
    return Stack(
        stack_key=stack_key(kept + duplicates),
        instances=tuple(kept),
        duplicates=tuple(duplicates),
        normal=normal,
        positions_along_normal=tuple(kept_along),
        findings=tuple(findings),
        rejected=any(f.action is Action.REJECT for f in findings),
    )


def plan_stacks(index: ExportIndex, config: IngestConfig | None = None) -> list[Stack]:
    """Split the index's usable instances into stacks, sorted along the normal, with findings.

    Rejected stacks are returned too (``Stack.rejected``) so they get a series row and a
    quarantine entry; :func:`~ctcorpus.ingest.pipeline.ingest_stack` skips their pixels.

    >>> stacks = plan_stacks(index_export("export"))   # doctest: +SKIP
    >>> [len(s.instances) for s in stacks]              # doctest: +SKIP
    [120, 120]
    """
    config = config or IngestConfig()
    groups: dict[tuple[object, ...], list[InstanceRecord]] = defaultdict(list)
    for record in index.usable:
        groups[_group_key(record)].append(record)
    by_series: dict[object, list[list[InstanceRecord]]] = defaultdict(list)
    for key, records in _thickness_filled(groups).items():
        for plane in _by_orientation(records):  # usable: orthogonal unit cosines (header.instance_problem)
            normal = slice_normal(plane[0].orientation or ())
            by_series[key[:2]].extend(_split_by_acquisition(plane, _projection(plane, normal), config.gap_factor))
    shared_studies = _patients_per_study(index.usable, config.patient_id_zeros)
    stacks = [
        _make_stack(records, config, split_from=len(parts), shared_study=shared_studies.get(records[0].study_uid))
        for parts in by_series.values()
        for records in parts
    ]
    stacks.sort(key=lambda s: (s.first.study_uid, s.first.series_number or 0, s.first.series_uid, s.stack_key))
    log.info("planned stacks=%d rejected=%d", len(stacks), sum(s.rejected for s in stacks))
    return stacks
