"""The synthetic hospital export: DICOM studies, RIS report exports and their ground truth.

:func:`generate_export` is the one entry point (the ``ctcorpus synth`` command calls it). Every
byte it writes depends only on its arguments, so tests and benchmarks can regenerate an export
instead of storing one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, RLELossless

from ctcorpus.errors import SynthError
from ctcorpus.synth.defects import (
    GROUP_CASE_STUDY,
    LATIN1_STUDY,
    ImageDefects,
    group_case_orders,
    seed_image_defects,
    seed_report_defects,
)
from ctcorpus.synth.dicom import SlicePlacement, uid
from ctcorpus.synth.phantom import FINDING_LABELS, FindingSpec, make_phantom
from ctcorpus.synth.report_text import as_rtf, render_report
from ctcorpus.synth.series import (
    StudyContext,
    file_names,
    instance_numbers,
    reslice,
    series_header,
    series_truth,
    write_stack,
)
from ctcorpus.synth.truth import ExportTruth, FindingTruth, ReportTruth, SeriesTruth, save_truth
from ctcorpus.taxonomy import LABEL_ANATOMY

__all__ = ["REPORT_COLUMNS", "generate_export", "reports_csv_text"]

#: Columns of ``reports.csv`` / ``reports.jsonl`` / ``reports_latin1.csv`` (the RIS export).
REPORT_COLUMNS: tuple[str, ...] = (
    "accession_number",
    "patient_id",
    "patient_name",
    "study_date",
    "report_text",
    "language",
)

_FOV_MM = 384.0
_SCANNERS = (  # manufacturer, model, primary kernel, second-recon kernel
    ("SIEMENS", "SOMATOM Definition AS+", "B30f", "B70f"),
    ("GE MEDICAL SYSTEMS", "LightSpeed VCT", "STANDARD", "LUNG"),
    ("Philips", "Brilliance 64", "B", "YC"),
    ("TOSHIBA", "Aquilion ONE", "FC13", "FC52"),
)
_NAMES = (
    ("Müller", "Jürgen"),
    ("Schröder", "Käthe"),
    ("Smith", "John"),
    ("Weiß", "Björn"),
    ("Johnson", "Mary"),
    ("Becker", "Anna"),
    ("García", "José"),
    ("Brown", "Linda"),
)
_STREETS = ("Hauptstraße 12, 10115 Berlin", "12 Baker Street, London NW1 6XE", "Lindenweg 3, 80331 München")


@dataclass(frozen=True, slots=True)
class _Grid:
    """The primary series' geometry for a matrix size (128: 3 mm pixels, 5 mm slices; 512: 0.75/1 mm)."""

    matrix: int
    n_slices: int
    pixel_mm: float
    dz_mm: float
    recon_dz_mm: float  # second reconstruction: thinner at 128 (2.5 mm), thicker at 512 (2 mm)


def _grid(matrix: int, n_slices: int | None) -> _Grid:
    if matrix < 64 or matrix > 1024:
        raise SynthError(f"matrix must be between 64 and 1024 pixels, got {matrix}")
    small = matrix <= 256
    n = n_slices if n_slices is not None else (48 if small else 300)
    if n < 8:
        raise SynthError(f"n_slices must be at least 8, got {n}")
    dz = 5.0 if small else 1.0
    return _Grid(matrix, n, _FOV_MM / matrix, dz, dz / 2 if small else dz * 2)


def _random_date(rng: np.random.Generator, start: date, days: int) -> date:
    return start + timedelta(days=int(rng.integers(0, days)))


def _findings(rng: np.random.Generator) -> list[FindingSpec]:
    """A seeded subset of the placeable labels, each with a side for the lateral ones."""
    chosen = [label for label in FINDING_LABELS if rng.random() < 0.4]
    return [FindingSpec(label, "left" if rng.random() < 0.5 else "right") for label in chosen]


def _nearest(z_values: Sequence[float], numbers: Sequence[int], z: float) -> tuple[int, float]:
    k = int(np.argmin(np.abs(np.asarray(z_values) - z)))
    return int(numbers[k]), float(z_values[k])


def _report_rows(reports: Sequence[ReportTruth], names: dict[str, str]) -> list[dict[str, str]]:
    """The RIS rows of ``reports`` (the text of an ``rtf_report`` defect as the RTF the RIS stored)."""
    return [
        {
            "accession_number": r.accession_number,
            "patient_id": r.patient_id,
            "patient_name": names.get(r.patient_id, ""),
            "study_date": r.study_date,
            "report_text": as_rtf(r.text) if r.defect == "rtf_report" else r.text,
            "language": r.language,
        }
        for r in reports
    ]


def reports_csv_text(rows: Sequence[dict[str, str]]) -> str:
    """RIS rows as the generator's CSV export (columns :data:`REPORT_COLUMNS`, a missing one empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_reports(
    out: Path, main: Sequence[ReportTruth], latin1: Sequence[ReportTruth], names: dict[str, str]
) -> tuple[str, ...]:
    """Write the RIS exports; the same rows in ``reports.csv`` and ``reports.jsonl``."""
    rows = _report_rows(main, names)
    (out / "reports.csv").write_bytes(reports_csv_text(rows).encode("utf-8"))
    jsonl = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    (out / "reports.jsonl").write_bytes(jsonl.encode("utf-8"))
    files = ["reports.csv", "reports.jsonl"]
    if latin1:
        (out / "reports_latin1.csv").write_bytes(reports_csv_text(_report_rows(latin1, names)).encode("cp1252"))
        files.append("reports_latin1.csv")
    return tuple(files)


def _write_localizer(ctx: StudyContext, grid: _Grid, rng: np.random.Generator) -> SeriesTruth:
    """A coronal scout: the phantom's mean HU along y, head at the top row."""
    hu = ctx.phantom.hu
    image = np.rint(hu.mean(axis=1, dtype=np.float32))[::-1].astype(np.int16)  # rows: z descending
    header = series_header(
        ctx, 1, "Topogram 0.6 T20s", "T20s", 1.0, grid.pixel_mm,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), pixel_spacing_mm=(grid.dz_mm, grid.pixel_mm),
    )
    ox, oy, _ = ctx.phantom.origin_mm
    placement = SlicePlacement(1, (ox, 0.0, ctx.z_mm[-1]), (1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    names = file_names(ctx, 1, 1, rng)
    write_stack(ctx, header, image[None], [placement], names)
    return series_truth(ctx, header, "localizer", names, [placement], image.shape,
                        expected_reasons=("localizer",))


def _write_axial(
    ctx: StudyContext,
    rng: np.random.Generator,
    *,
    series_number: int,
    kind: str,
    kernel: str,
    images: np.ndarray,
    z_mm: Sequence[float],
    thickness_mm: float,
    pixel_mm: float,
    head_first: bool,
    transfer_syntax: str,
    label_map: str = "",
) -> SeriesTruth:
    """Write one clean axial stack (``images`` z ascending) and return its truth."""
    header = series_header(
        ctx, series_number, f"Thorax {thickness_mm:g} {kernel}", kernel, thickness_mm, pixel_mm,
        transfer_syntax=transfer_syntax, signed=bool(rng.random() < 0.5),
    )
    ox, oy, _ = ctx.phantom.origin_mm
    numbers = instance_numbers(len(z_mm), head_first)
    placements = [SlicePlacement(n, (ox, oy, float(z))) for n, z in zip(numbers, z_mm, strict=True)]
    names = file_names(ctx, series_number, len(z_mm), rng)
    write_stack(ctx, header, images, placements, names)
    return series_truth(ctx, header, kind, names, placements, images.shape[1:], label_map=label_map)


def generate_export(
    out: Path,
    *,
    patients: int = 3,
    seed: int = 0,
    defects: bool = False,
    phi: bool = False,
    language: str = "en",
    matrix: int = 128,
    n_slices: int | None = None,
) -> ExportTruth:
    """Write a synthetic hospital CT export under ``out`` and return (and save) its ground truth.

    Each patient gets 1-3 chest CT studies; each study a localizer, a primary axial series with
    a ground-truth organ label map, and a second reconstruction of the same acquisition (other
    kernel and slice thickness, same frame of reference). Findings are placed in the phantom at
    known positions and described (with image references) by the report renderer. File names do
    not sort in slice order, instance numbers run head-to-feet or feet-to-head per series, and the
    rescale convention varies — the export is meant to be as awkward as a real PACS dump.

    Parameters
    ----------
    out
        Export root (created; an existing one must be empty); files are written under it with
        relative paths recorded in the truth.
    patients, seed
        Number of patients; the seed fixes every byte (UIDs, dates, pixels, text).
    defects
        Also seed broken inputs, each recorded as a ``DefectTruth`` with the ``QuarantineReason``
        ingestion must give: truncated, non-DICOM and non-CT files; stacks with a missing or
        duplicated slice, gantry tilt, non-uniform spacing or two stacks under one UID; orphan,
        missing, empty, latin-1, RTF and superseded reports. Clean RLE and JPEG Lossless series
        are added too, a group case (a study with two orders, each with a report) and a report
        only a DICOM SR document holds (the empty report's study).
        Needs at least 2 patients.
    phi
        Seed identifying values in DICOM headers (listed in ``phi_header_values``) and in reports.
    language
        ``"en"``, ``"de"`` or ``"mixed"`` (a random choice per study).
    matrix, n_slices
        In-plane size (128: 3 mm pixels, 48 slices of 5 mm; 512: 0.75 mm pixels, 300 slices of
        1 mm); ``n_slices`` overrides the primary slice count.

    Returns
    -------
    ExportTruth
        Also written to ``out/ground_truth.json``.

    Examples
    --------
    >>> truth = generate_export(Path("/tmp/export"), patients=2, seed=1)  # doctest: +SKIP
    >>> truth.series[0].kind                                              # doctest: +SKIP
    'localizer'
    """
    if language not in ("en", "de", "mixed"):
        raise SynthError(f"language must be 'en', 'de' or 'mixed', got {language!r}")
    if patients < 1 or (defects and patients < 2):
        raise SynthError(f"need at least {2 if defects else 1} patients, got {patients}")
    grid = _grid(matrix, n_slices)
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        # file names are drawn from the seed: an earlier export's files would stay and be read as this one's
        raise SynthError("the export folder is not empty; remove it or choose another", path=out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series: list[SeriesTruth] = []
    reports: list[ReportTruth] = []
    findings: dict[str, tuple[FindingTruth, ...]] = {}
    studies: list[StudyContext] = []
    names: dict[str, str] = {}
    phi_values: set[str] = set()
    study_index = 0
    for p in range(patients):
        patient_id = f"PID{seed:03d}{p:04d}"
        family, given = _NAMES[int(rng.integers(len(_NAMES)))]
        birth = _random_date(rng, date(1935, 1, 1), 365 * 50).strftime("%Y%m%d")
        sex = "F" if rng.random() < 0.5 else "M"
        extra: tuple[tuple[str, str], ...] = ()
        name = f"{family}^{given}" if phi else f"ANON^{patient_id}"
        if phi:
            extra = (
                ("OtherPatientIDs", f"MRN{int(rng.integers(10**6, 10**7))}"),
                ("ReferringPhysicianName", f"{_NAMES[int(rng.integers(len(_NAMES)))][0]}^Dr"),
                ("InstitutionName", "St. Synthetic Hospital"),
                ("InstitutionAddress", _STREETS[int(rng.integers(len(_STREETS)))]),
                ("PatientAddress", _STREETS[int(rng.integers(len(_STREETS)))]),
                ("PatientTelephoneNumbers", f"+49 30 {int(rng.integers(10**6, 10**7))}"),
            )
            phi_values.update({name, birth, *(v for _, v in extra)})
        names[patient_id] = name
        # Habitus from its own stream: every patient's body differs, the main stream is untouched.
        habitus = np.random.default_rng([seed, p, 0x6A617]).uniform((0.86, 0.86, -0.05), (1.12, 1.14, 0.05))
        n_studies = int(rng.integers(1, 4))
        if defects:
            n_studies = max(n_studies, 2)
        first_day = _random_date(rng, date(2018, 1, 1), 900)
        for s in range(n_studies):
            study_day = first_day + timedelta(days=s * 200 + int(rng.integers(0, 150)))
            accession = f"ACC{seed:03d}{study_index:05d}"
            study_uid = uid("ctcorpus-synth", seed, "study", study_index)
            manufacturer, model, kernel, recon_kernel = _SCANNERS[int(rng.integers(len(_SCANNERS)))]
            specs = _findings(rng)
            phantom = make_phantom(
                (grid.n_slices, grid.matrix, grid.matrix),
                (grid.dz_mm, grid.pixel_mm, grid.pixel_mm),
                rng,
                specs,
                contrast=bool(rng.random() < 0.5),
                body_scale=(float(habitus[0]), float(habitus[1])),
                chest_offset=float(habitus[2]),
                origin_mm=(
                    -(grid.matrix - 1) / 2 * grid.pixel_mm,
                    -(grid.matrix - 1) / 2 * grid.pixel_mm,
                    -float(rng.integers(100, 400)),
                ),
            )
            z_mm = tuple(phantom.origin_mm[2] + k * grid.dz_mm for k in range(grid.n_slices))
            ctx = StudyContext(
                root=out, index=study_index, layout=p % 2, patient_id=patient_id, patient_name=name,
                birth_date=birth, sex=sex, study_uid=study_uid, study_date=study_day.strftime("%Y%m%d"),
                study_time=f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00",
                accession_number=accession, frame_of_reference_uid=uid(study_uid, "frame"),
                manufacturer=manufacturer, model=model, phantom=phantom, z_mm=z_mm, extra=extra,
                header_birth_date=birth if phi else "",
                requested_accession_numbers=group_case_orders(accession) if defects and study_index == GROUP_CASE_STUDY else (),
            )
            studies.append(ctx)
            label_path = f"labels/{accession}_primary.npy"
            (out / "labels").mkdir(exist_ok=True)
            np.save(out / label_path, phantom.labels)
            primary_no = int(rng.choice([2, 3, 5]))
            recon_no = primary_no + int(rng.choice([1, 2]))
            head_first = study_index % 2 == 0
            compressed = defects and study_index == 0
            series.append(_write_localizer(ctx, grid, rng))
            primary = _write_axial(
                ctx, rng, series_number=primary_no, kind="axial", kernel=kernel, images=phantom.hu,
                z_mm=z_mm, thickness_mm=grid.dz_mm, pixel_mm=grid.pixel_mm, head_first=head_first,
                transfer_syntax=RLELossless if compressed else ExplicitVRLittleEndian, label_map=label_path,
            )
            n_recon = int(round((z_mm[-1] - z_mm[0]) / grid.recon_dz_mm)) + 1
            recon_z = [z_mm[0] + k * grid.recon_dz_mm for k in range(n_recon)]
            recon = _write_axial(
                ctx, rng, series_number=recon_no, kind="recon", kernel=recon_kernel,
                images=reslice(phantom.hu, z_mm, recon_z, grid.recon_dz_mm), z_mm=recon_z,
                thickness_mm=grid.recon_dz_mm, pixel_mm=grid.pixel_mm, head_first=not head_first,
                transfer_syntax=JPEGLosslessSV1 if compressed else ExplicitVRLittleEndian,
            )
            series += [primary, recon]
            study_findings = []
            for placed in phantom.findings:
                target = primary if rng.random() < 0.7 else recon
                instance, z_slice = _nearest(target.z_mm, target.instance_numbers, placed.center_mm[2])
                study_findings.append(
                    FindingTruth(
                        label=placed.label, anatomy=LABEL_ANATOMY[placed.label].value, side=placed.side,
                        center_mm=placed.center_mm, radius_mm=placed.radius_mm,
                        series_number=target.series_number, instance_number=instance, z_mm=z_slice,
                    )
                )
            findings[study_uid] = tuple(study_findings)
            lang = language if language != "mixed" else ("en" if rng.random() < 0.5 else "de")
            if defects and study_index == LATIN1_STUDY:
                lang = "de"  # its report goes to reports_latin1.csv: German text with umlauts
            by_series = {s.series_number: s for s in (primary, recon)}

            def z_of_instance(series_number: int, instance: int, _by: dict = by_series) -> float:
                """z of an instance, extrapolated linearly beyond the series (uniform spacing)."""
                s = _by[series_number]
                first = s.z_mm[s.instance_numbers.index(1)]
                step = (s.z_mm[-1] - s.z_mm[0]) / (s.n_slices - 1) * (1 if s.instance_numbers[0] == 1 else -1)
                return float(first + (instance - 1) * step)

            reports.append(
                render_report(
                    # its own stream, as the habitus: a change to the report templates moves no image
                    np.random.default_rng([seed, study_index, 0x7E9017]), accession_number=accession, patient_id=patient_id, patient_name=name,
                    birth_date=birth, study_date=ctx.study_date, language=lang,
                    findings=study_findings, primary_series_number=primary_no,
                    secondary_series_number=recon_no, phi=phi, study_uid=study_uid,
                    z_of_instance=z_of_instance,
                )
            )
            study_index += 1

    defect_truths = []
    latin1: list[ReportTruth] = []
    sr_reports: list[ReportTruth] = []
    if defects:
        image: ImageDefects = seed_image_defects(studies, rng)
        series += image.series
        reports, latin1, report_defects, sr_reports = seed_report_defects(studies, reports, rng)
        defect_truths = [*image.defects, *report_defects]
    order = rng.permutation(len(reports))  # RIS exports are not in study order
    reports = [reports[int(i)] for i in order]
    # but an earlier version of a report precedes the one that supersedes it
    reports.sort(key=lambda r: r.defect != "superseded_report")
    report_files = _write_reports(out, reports, latin1, names)
    truth = ExportTruth(
        seed=seed,
        matrix=grid.matrix,
        language=language,
        series=tuple(series),
        reports=tuple(reports) + tuple(latin1) + tuple(sr_reports),
        findings=findings,
        defects=tuple(defect_truths),
        report_files=report_files,
        phi_header_values=tuple(sorted(phi_values)),
    )
    save_truth(truth, out)
    return truth
