"""Ground truth of a synthetic export: the sidecar ``ground_truth.json`` every test checks against.

The generator (``ctcorpus.synth``) writes it; tests and benchmarks read it with
:func:`load_truth`. Paths are relative to the export root; z positions are patient-LPS z in mm
(the DICOM ImagePositionPatient z of the slice centre).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRUTH_FILE = "ground_truth.json"


@dataclass(frozen=True, slots=True)
class FindingTruth:
    """A finding placed in a study's phantom, and where the report points at it."""

    label: str  # one of ctcorpus.taxonomy.CT_RATE_LABELS
    anatomy: str  # ctcorpus.taxonomy.Anatomy value
    side: str  # "left", "right" or "" (midline / bilateral)
    center_mm: tuple[float, float, float]  # LPS centre
    radius_mm: float
    series_number: int  # series the report references (primary axial or the second recon)
    instance_number: int  # InstanceNumber of the slice nearest the centre in that series
    z_mm: float  # z of that slice


@dataclass(frozen=True, slots=True)
class SeriesTruth:
    """One generated series (or deliberately broken stack) and what ingestion should make of it."""

    patient_id: str
    study_uid: str
    series_uid: str
    series_number: int
    kind: str  # "axial" (primary), "recon" (second reconstruction), "localizer", "defect"
    frame_of_reference_uid: str
    files: tuple[str, ...]  # relative paths, in slice order (z ascending)
    rows: int
    columns: int
    n_slices: int
    spacing_mm: tuple[float, float, float]  # (x, y, z) as SimpleITK reports it
    origin_mm: tuple[float, float, float]  # LPS position of voxel (0, 0, 0)
    direction: tuple[float, ...]  # 9 values, row-major, as SimpleITK GetDirection()
    slice_thickness_mm: float
    kernel: str
    instance_numbers: tuple[int, ...]  # per file in `files`
    z_mm: tuple[float, ...]  # per file in `files`
    transfer_syntax: str  # UID
    label_map: str  # relative path of the .npy ground-truth label map (z, y, x) or ""
    expected_reasons: tuple[str, ...] = ()  # QuarantineReason values ingestion must report
    defect: str = ""  # the seeded defect's name, "" for a clean series


@dataclass(frozen=True, slots=True)
class PhiSpan:
    """A seeded PHI span in a report's text (character offsets into ``ReportTruth.text``)."""

    start: int
    end: int
    kind: str  # "name", "date", "id", "phone", "address", "age"


@dataclass(frozen=True, slots=True)
class SentenceTruth:
    """A generated sentence with its anatomies and label states."""

    start: int
    end: int
    section: str  # "findings", "impression", "technique", "comparison", "clinical_information"
    anatomies: tuple[str, ...]
    labels: dict[str, str]  # label -> "positive" | "negative" | "uncertain"


@dataclass(frozen=True, slots=True)
class ReferenceTruth:
    """An image reference written into a report, and where it resolves."""

    start: int  # char offsets of the reference expression itself
    end: int
    text: str
    series_number: int | None  # None when the text states no series
    image_numbers: tuple[int, ...]
    z_mm: tuple[float, ...]  # per image number; empty when unresolvable
    expected_reason: str = ""  # QuarantineReason value when it must not resolve
    label: str = ""  # the finding's label, "" for none


@dataclass(frozen=True, slots=True)
class ReportTruth:
    """One report row of the export and what the NLP stages should find in it."""

    accession_number: str
    patient_id: str
    study_date: str  # YYYYMMDD
    language: str  # "en" or "de"
    text: str
    labels: dict[str, str]  # report level: label -> positive | negative | uncertain (absent: not mentioned)
    sentences: tuple[SentenceTruth, ...] = ()
    phi: tuple[PhiSpan, ...] = ()
    references: tuple[ReferenceTruth, ...] = ()
    study_uid: str = ""  # "" for an orphan report
    defect: str = ""  # "orphan_report", "latin1", "empty_report", ...
    expected_reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DefectTruth:
    """A seeded defect and the reason code ingestion or report linking must give it."""

    kind: str  # e.g. "truncated", "not_dicom", "missing_slice", "gantry_tilt", "no_report", ...
    paths: tuple[str, ...]
    expected_reason: str  # QuarantineReason value
    series_uid: str = ""
    accession_number: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"tilt_deg": 12.0}


@dataclass(frozen=True, slots=True)
class ExportTruth:
    """Everything the generator put in one export."""

    seed: int
    matrix: int
    language: str
    series: tuple[SeriesTruth, ...]
    reports: tuple[ReportTruth, ...]
    findings: dict[str, tuple[FindingTruth, ...]]  # study_uid -> findings
    defects: tuple[DefectTruth, ...]
    report_files: tuple[str, ...]  # relative paths of the RIS exports (CSV, JSONL)
    phi_header_values: tuple[str, ...] = ()  # seeded PHI written into DICOM headers


_NESTED: dict[str, Any] = {
    "series": SeriesTruth,
    "reports": ReportTruth,
    "defects": DefectTruth,
    "sentences": SentenceTruth,
    "phi": PhiSpan,
    "references": ReferenceTruth,
}


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in _NESTED and isinstance(value, list):
            value = tuple(_build(_NESTED[f.name], v) for v in value)
        elif f.name == "findings" and isinstance(value, dict):
            value = {k: tuple(_build(FindingTruth, v) for v in vs) for k, vs in value.items()}
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[f.name] = value
    return cls(**kwargs)


def save_truth(truth: ExportTruth, root: str | Path) -> Path:
    """Write ``ground_truth.json`` under ``root`` (sorted keys: byte-identical for a seed)."""
    path = Path(root) / TRUTH_FILE
    path.write_text(json.dumps(dataclasses.asdict(truth), sort_keys=True, indent=1), encoding="utf-8")
    return path


def load_truth(root: str | Path) -> ExportTruth:
    """Read the ground truth of the export at ``root``."""
    data = json.loads((Path(root) / TRUTH_FILE).read_text(encoding="utf-8"))
    return _build(ExportTruth, data)
