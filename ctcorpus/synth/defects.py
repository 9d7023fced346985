"""Seeded defects of a synthetic export: the broken inputs ingestion and report linking must catch.

Each defect is written next to a clean study (never instead of its primary series, so every
study stays usable) and recorded as a :class:`~ctcorpus.synth.truth.DefectTruth` carrying the
:class:`~ctcorpus.enums.QuarantineReason` value the pipeline must report. Defect stacks get
series numbers from 90 up; their :class:`~ctcorpus.synth.truth.SeriesTruth` has ``kind="defect"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctcorpus.enums import QuarantineReason as R
from ctcorpus.errors import SynthError
from ctcorpus.synth.dicom import SlicePlacement, build_slice, write_dataset, write_sr_report
from ctcorpus.synth.report_text import render_report
from ctcorpus.synth.series import (
    StudyContext,
    file_names,
    instance_numbers,
    reslice,
    series_header,
    series_truth,
    write_stack,
)
from ctcorpus.synth.truth import DefectTruth, ReportTruth, SeriesTruth

__all__ = ["EMPTY_REPORT_STUDY", "GROUP_CASE_STUDY", "LATIN1_STUDY", "RTF_REPORT_STUDY", "SR_REPORT_STUDY",
           "ImageDefects", "group_case_orders", "seed_image_defects", "seed_report_defects"]

#: Study index (export order) whose report is written to ``reports_latin1.csv`` (German, cp1252).
LATIN1_STUDY = 1
#: Study index whose report text is empty.
EMPTY_REPORT_STUDY = 2
#: Study index whose report the DICOM export holds as a Basic Text SR document (its RIS row is the
#: empty one): the reports stage takes the report from there.
SR_REPORT_STUDY = EMPTY_REPORT_STUDY
#: Series number of that SR document.
_SR_SERIES = 80
#: Study index whose report the RIS stored as RTF (written so to both exports; the truth is its plain
#: text), after a preliminary version of it under the same accession number (superseded).
RTF_REPORT_STUDY = 0
#: Study index that is a group case: its scan fulfils a chest order (its AccessionNumber) and an
#: abdomen order, both listed in its RequestAttributesSequence, and each order has a report.
GROUP_CASE_STUDY = 1


def group_case_orders(accession_number: str) -> tuple[str, str]:
    """The accession numbers of the group case study's orders: its own and the abdomen order's."""
    return accession_number, f"{accession_number}-ABD"


@dataclass(frozen=True, slots=True)
class ImageDefects:
    """The defect stacks written and every file-level or stack-level defect."""

    series: tuple[SeriesTruth, ...]
    defects: tuple[DefectTruth, ...]


@dataclass(frozen=True, slots=True)
class _Sub:
    """A slab of the study's primary grid that defect stacks are cut from."""

    hu: np.ndarray
    z: tuple[float, ...]
    pixel_mm: float
    dz_mm: float
    origin_xy: tuple[float, float]


def _sub(ctx: StudyContext) -> _Sub:
    n = len(ctx.z_mm)
    m = max(8, min(24, n // 2))
    start = (n - m) // 2
    dz, _, dx = ctx.phantom.spacing_zyx
    return _Sub(ctx.phantom.hu[start:start + m], ctx.z_mm[start:start + m], dx, dz, ctx.phantom.origin_mm[:2])


def _axial(sub: _Sub, z: Sequence[float], head_first: bool) -> list[SlicePlacement]:
    numbers = instance_numbers(len(z), head_first)
    return [SlicePlacement(n, (sub.origin_xy[0], sub.origin_xy[1], float(v))) for n, v in zip(numbers, z, strict=True)]


def _record(
    ctx: StudyContext, kind: str, paths: Sequence[str], reason: R, series_uid: str = "", detail: dict | None = None
) -> DefectTruth:
    return DefectTruth(kind, tuple(paths), reason.value, series_uid, ctx.accession_number, detail or {})


_Seeded = tuple[SeriesTruth | None, DefectTruth]


def _truncated(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """One slice whose file stops half-way through its pixel data (an interrupted copy)."""
    sub = _sub(ctx)
    header = series_header(ctx, number, "Thorax 5 B30f", "B30f", sub.dz_mm, sub.pixel_mm)
    name = file_names(ctx, number, 1, rng)[0]
    write_stack(ctx, header, sub.hu[:1], _axial(sub, sub.z[:1], False), [name])
    path = ctx.root / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    detail = {"original_bytes": len(data), "truncated_bytes": len(data) // 2}
    return None, _record(ctx, "truncated", (name,), R.TRUNCATED, header.series_uid, detail)


def _not_dicom(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """A PACS export note and a JPEG thumbnail lying among the DICOM files."""
    folder = Path(file_names(ctx, number, 1, rng)[0]).parent
    note, thumb = (folder / "EXPORT_NOTE.TXT").as_posix(), (folder / "THUMB0001.JPG").as_posix()
    (ctx.root / folder).mkdir(parents=True, exist_ok=True)
    (ctx.root / note).write_bytes(f"Exported study {ctx.accession_number} from PACS\r\n".encode("ascii"))
    # JFIF header, a few payload bytes and the end-of-image marker: a file viewers call a JPEG.
    jfif = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    (ctx.root / thumb).write_bytes(jfif + bytes(64) + b"\xff\xd9")
    return None, _record(ctx, "not_dicom", (note, thumb), R.NOT_DICOM, "")


def _non_ct(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """An MR image and a secondary-capture dose page filed in the CT study."""
    sub = _sub(ctx)
    paths = []
    for offset, modality, image_type, description in (
        (0, "MR", ("ORIGINAL", "PRIMARY", "M", "ND"), "t1_vibe_tra"),
        (1, "OT", ("DERIVED", "SECONDARY", "OTHER"), "Dose Report"),
    ):
        header = series_header(
            ctx, number + offset, description, "", sub.dz_mm, sub.pixel_mm, modality=modality, image_type=image_type,
        )
        image = np.clip(sub.hu[len(sub.z) // 2] + 1000, 0, 2000).astype(np.int16) // 4 if modality == "MR" else (
            np.kron(rng.integers(0, 2, (8, 8)), np.ones((16, 16))).astype(np.int16) * 200
        )
        name = file_names(ctx, number + offset, 1, rng)[0]
        write_dataset(build_slice(header, image, _axial(sub, sub.z[:1], False)[0]), ctx.root / name)
        paths.append(name)
    return None, _record(ctx, "non_ct", tuple(paths), R.NON_CT, "", {"modalities": ["MR", "OT"]})


def _missing_slice(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """The slab with its middle slice removed: one gap of twice the spacing."""
    sub = _sub(ctx)
    keep = [k for k in range(len(sub.z)) if k != len(sub.z) // 2]
    header = series_header(ctx, number, "Thorax 5 B30f", "B30f", sub.dz_mm, sub.pixel_mm)
    placements = [p for k, p in enumerate(_axial(sub, sub.z, True)) if k in keep]
    names = file_names(ctx, number, len(keep), rng)
    write_stack(ctx, header, sub.hu[keep], placements, names)
    truth = series_truth(ctx, header, "defect", names, placements, sub.hu.shape[1:],
                         expected_reasons=(R.MISSING_SLICES.value,), defect="missing_slice")
    detail = {"missing_z_mm": sub.z[len(sub.z) // 2], "gap_mm": 2 * sub.dz_mm}
    return truth, _record(ctx, "missing_slice", tuple(names), R.MISSING_SLICES, header.series_uid, detail)


def _duplicate_slice(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """The slab with one instance exported twice under two file names (identical bytes)."""
    sub = _sub(ctx)
    header = series_header(ctx, number, "Thorax 5 B30f", "B30f", sub.dz_mm, sub.pixel_mm)
    placements = _axial(sub, sub.z, False)
    names = file_names(ctx, number, len(placements) + 1, rng)
    write_stack(ctx, header, sub.hu, placements, names[:-1])
    mid = len(placements) // 2
    (ctx.root / names[-1]).write_bytes((ctx.root / names[mid]).read_bytes())
    truth = series_truth(ctx, header, "defect", names[:-1], placements, sub.hu.shape[1:],
                         expected_reasons=(R.DUPLICATE_SLICE.value,), defect="duplicate_slice")
    files = list(truth.files)
    files.insert(mid + 1, names[-1])
    numbers, zs = list(truth.instance_numbers), list(truth.z_mm)
    numbers.insert(mid + 1, numbers[mid])
    zs.insert(mid + 1, zs[mid])
    truth = dataclasses.replace(
        truth, files=tuple(files), n_slices=len(files), instance_numbers=tuple(numbers), z_mm=tuple(zs)
    )
    detail = {"original": names[mid], "copy": names[-1]}
    return truth, _record(ctx, "duplicate_slice", (names[mid], names[-1]), R.DUPLICATE_SLICE, header.series_uid, detail)


def _gantry_tilt(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """Slices tilted about x; each slice's centre row stays on the table axis at its z."""
    sub = _sub(ctx)
    angle = float(rng.choice([12.0, 15.0, 20.0]))
    c, s = float(np.cos(np.deg2rad(angle))), float(np.sin(np.deg2rad(angle)))
    hu, (dz, dy, _) = ctx.phantom.hu, ctx.phantom.spacing_zyx
    ny = hu.shape[1]
    half = (ny - 1) / 2 * dy
    rows = np.arange(ny) * dy
    images, placements = [], []
    for n, z in zip(instance_numbers(len(sub.z), True), sub.z, strict=True):
        y_rows = -half * c + rows * c
        z_rows = z - half * s + rows * s
        kz = np.clip(np.rint((z_rows - ctx.z_mm[0]) / dz), 0, hu.shape[0] - 1).astype(int)
        jy = np.clip(np.rint((y_rows - ctx.phantom.origin_mm[1]) / dy), 0, ny - 1).astype(int)
        images.append(hu[kz, jy, :])
        position = (sub.origin_xy[0], round(-half * c, 6), round(z - half * s, 6))
        placements.append(SlicePlacement(n, position, (1.0, 0.0, 0.0, 0.0, c, s)))
    header = series_header(ctx, number, "Thorax tilt B30f", "B30f", sub.dz_mm, sub.pixel_mm,
                           extra=ctx.extra + (("GantryDetectorTilt", f"{angle:g}"),))
    names = file_names(ctx, number, len(placements), rng)
    write_stack(ctx, header, np.stack(images), placements, names)
    truth = series_truth(ctx, header, "defect", names, placements, sub.hu.shape[1:],
                         expected_reasons=(R.GANTRY_TILT.value,), defect="gantry_tilt")
    return truth, _record(ctx, "gantry_tilt", tuple(names), R.GANTRY_TILT, header.series_uid, {"tilt_deg": angle})


def _non_uniform(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """Spacing changes half-way (dz, then 1.5 dz): not a gap of whole missing slices."""
    sub = _sub(ctx)
    m = len(sub.z)
    steps = [sub.dz_mm] * (m // 2) + [1.5 * sub.dz_mm] * (m - m // 2 - 1)
    z = [sub.z[0] + float(v) for v in np.concatenate([[0.0], np.cumsum(steps)])]
    header = series_header(ctx, number, "Thorax 5 B30f", "B30f", sub.dz_mm, sub.pixel_mm)
    placements = _axial(sub, z, False)
    names = file_names(ctx, number, len(z), rng)
    write_stack(ctx, header, reslice(ctx.phantom.hu, ctx.z_mm, z, sub.dz_mm), placements, names)
    truth = series_truth(ctx, header, "defect", names, placements, sub.hu.shape[1:],
                         expected_reasons=(R.NON_UNIFORM_SPACING.value,), defect="non_uniform_spacing")
    detail = {"steps_mm": sorted(set(steps))}
    return truth, _record(ctx, "non_uniform_spacing", tuple(names), R.NON_UNIFORM_SPACING, header.series_uid, detail)


def _mixed_stacks(ctx: StudyContext, rng: np.random.Generator, number: int) -> _Seeded:
    """Two stacks of different matrix size (and pixel spacing) under one SeriesInstanceUID."""
    sub = _sub(ctx)
    m = len(sub.z)
    ny = sub.hu.shape[1]
    small = ny * 3 // 4
    pick = np.rint(np.linspace(0, ny - 1, small)).astype(int)
    pixel_b = sub.pixel_mm * (ny - 1) / (small - 1)
    header_a = series_header(ctx, number, "Thorax 5 B30f", "B30f", sub.dz_mm, sub.pixel_mm)
    header_b = dataclasses.replace(header_a, pixel_spacing_mm=(pixel_b, pixel_b))
    place_a = _axial(sub, sub.z, False)
    place_b = [dataclasses.replace(p, instance_number=p.instance_number + m) for p in place_a]
    names = file_names(ctx, number, 2 * m, rng)
    write_stack(ctx, header_a, sub.hu, place_a, names[:m])
    write_stack(ctx, header_b, sub.hu[:, pick][:, :, pick], place_b, names[m:])
    truth = series_truth(ctx, header_a, "defect", names[:m], place_a, sub.hu.shape[1:],
                         expected_reasons=(R.MIXED_STACKS.value,), defect="mixed_stacks")
    order = [i for k in range(m) for i in (k, k + m)]
    placements = place_a + place_b
    truth = dataclasses.replace(
        truth,
        files=tuple(names[i] for i in order),
        n_slices=2 * m,
        instance_numbers=tuple(placements[i].instance_number for i in order),
        z_mm=tuple(float(placements[i].position_mm[2]) for i in order),
    )
    detail = {"shapes": [[ny, ny], [small, small]]}
    return truth, _record(ctx, "mixed_stacks", tuple(names), R.MIXED_STACKS, header_a.series_uid, detail)


_SEEDERS: tuple[Callable[[StudyContext, np.random.Generator, int], _Seeded], ...] = (
    _truncated,
    _not_dicom,
    _non_ct,
    _missing_slice,
    _duplicate_slice,
    _gantry_tilt,
    _non_uniform,
    _mixed_stacks,
)


def seed_image_defects(studies: Sequence[StudyContext], rng: np.random.Generator) -> ImageDefects:
    """Write every file/stack defect once, spread round-robin over the studies.

    Examples
    --------
    >>> seed_image_defects(studies, np.random.default_rng(0)).defects[0].kind  # doctest: +SKIP
    'truncated'
    """
    series, defects = [], []
    for i, seeder in enumerate(_SEEDERS):
        truth, defect = seeder(studies[i % len(studies)], rng, 90 + 2 * i)
        if truth is not None:
            series.append(truth)
        defects.append(defect)
    return ImageDefects(tuple(series), tuple(defects))


def seed_report_defects(
    studies: Sequence[StudyContext], reports: Sequence[ReportTruth], rng: np.random.Generator
) -> tuple[list[ReportTruth], list[ReportTruth], list[DefectTruth], list[ReportTruth]]:
    """Break the RIS export: an empty report, a latin-1 file, an RTF report text with a preliminary
    version before it, a study without and an orphan report; add the report of the group case
    study's second order (linked by its RequestAttributesSequence, not quarantined); and write the
    report the RIS row lacks as a DICOM SR document of its study.

    ``reports`` are in study order. Returns the rows of ``reports.csv``, the rows of
    ``reports_latin1.csv`` (the :data:`LATIN1_STUDY` report, which the generator renders in
    German), the defects and the reports only an SR document holds. Needs at least 4 studies so
    the four defects hit different studies.
    """
    if len(studies) < 4:
        raise SynthError(f"report defects need at least 4 studies, got {len(studies)}")
    main = list(reports)
    empty = main[EMPTY_REPORT_STUDY]
    main[EMPTY_REPORT_STUDY] = dataclasses.replace(
        empty, text="", labels={}, sentences=(), phi=(), references=(), defect="empty_report",
        expected_reasons=(R.EMPTY_REPORT.value,),
    )
    latin1 = [dataclasses.replace(main[LATIN1_STUDY], defect="latin1")]
    rtf = main[RTF_REPORT_STUDY] = dataclasses.replace(main[RTF_REPORT_STUDY], defect="rtf_report")
    missing = studies[-1]
    ctx = studies[0]
    orphan_accession = f"{ctx.accession_number[:-5]}{99999 - len(studies):05d}"
    orphan = render_report(
        rng, accession_number=orphan_accession, patient_id=ctx.patient_id, patient_name=ctx.patient_name,
        birth_date=ctx.birth_date, study_date=ctx.study_date, language=reports[0].language, findings=(),
        primary_series_number=2, secondary_series_number=3, phi=False, study_uid="",
    )
    orphan = dataclasses.replace(orphan, defect="orphan_report", expected_reasons=(R.ORPHAN_REPORT.value,))
    first = studies[RTF_REPORT_STUDY]
    preliminary = render_report(  # a normal report: kept instead of the final one, it would lose its findings
        rng, accession_number=rtf.accession_number, patient_id=rtf.patient_id, patient_name=first.patient_name,
        birth_date=first.birth_date, study_date=rtf.study_date, language=rtf.language, findings=(),
        primary_series_number=2, secondary_series_number=3, phi=False, study_uid=rtf.study_uid,
    )
    preliminary = dataclasses.replace(preliminary, defect="superseded_report",
                                      expected_reasons=(R.SUPERSEDED_REPORT.value,))
    group = studies[GROUP_CASE_STUDY]
    second_order = render_report(
        rng, accession_number=group.requested_accession_numbers[-1], patient_id=group.patient_id,
        patient_name=group.patient_name, birth_date=group.birth_date, study_date=group.study_date,
        language=reports[GROUP_CASE_STUDY].language, findings=(), primary_series_number=2,
        secondary_series_number=3, phi=False, study_uid=group.study_uid,
    )
    second_order = dataclasses.replace(second_order, defect="group_case")
    kept = [r for i, r in enumerate(main) if i not in (LATIN1_STUDY, len(studies) - 1)]
    kept += [orphan, preliminary, second_order]
    sr_study = studies[SR_REPORT_STUDY]
    sr_file = (Path(file_names(sr_study, _SR_SERIES, 1, rng)[0]).parent / "SR00001").as_posix()
    write_sr_report(sr_study.root / sr_file, series_header(sr_study, _SR_SERIES, "Report", "", 0.0, 0.0),
                    [("", [reports[SR_REPORT_STUDY].text])], language=reports[SR_REPORT_STUDY].language)
    sr_report = dataclasses.replace(reports[SR_REPORT_STUDY], defect="sr_report")
    defects = [
        DefectTruth("empty_report", ("reports.csv", "reports.jsonl"), R.EMPTY_REPORT.value,
                    accession_number=empty.accession_number),
        DefectTruth("latin1", ("reports_latin1.csv",), "", accession_number=latin1[0].accession_number,
                    detail={"encoding": "cp1252"}),
        DefectTruth("rtf_report", ("reports.csv", "reports.jsonl"), "", accession_number=rtf.accession_number,
                    detail={"markup": "rtf"}),
        DefectTruth("superseded_report", ("reports.csv", "reports.jsonl"), R.SUPERSEDED_REPORT.value,
                    accession_number=rtf.accession_number),
        DefectTruth("no_report", (), R.NO_REPORT.value, accession_number=missing.accession_number),
        DefectTruth("group_case", ("reports.csv", "reports.jsonl"), "", accession_number=second_order.accession_number,
                    detail={"study_accession_number": group.accession_number, "link_method": "requested_accession"}),
        DefectTruth("sr_report", (sr_file,), R.NON_IMAGE.value, accession_number=sr_report.accession_number,
                    detail={"link_method": "dicom_sr"}),
        DefectTruth("orphan_report", ("reports.csv", "reports.jsonl"), R.ORPHAN_REPORT.value,
                    accession_number=orphan_accession),
    ]
    return kept, latin1, defects, [sr_report]
