"""Reports stored in the DICOM export itself: a structured report (SR) document in the study.

A PACS export often holds the report as a Basic Text or Enhanced SR object beside the images, and
for a study the RIS export lacks it is the only report there is. Its text items are read in
document order; a container named by a section heading ("Findings", "Impressions", "History", in
the lexicon) opens that section, as does a text item so named outside any section, so sectioning
reads the SR's own structure back (TID 2000 names each text item under "Impressions" an
"Impression" and under "Findings" a "Finding": inside a section the name opens nothing).
Observation context (observer names, dates) is not report text and is left out.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom

from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import ReportError
from ctcorpus.reports.lexicon import SECTION_OF_HEADING
from ctcorpus.reports.io import normalize_date, normalize_time
from ctcorpus.reports.records import RawReport

__all__ = ["SR_STORAGE", "read_sr_report"]

#: SR storage SOP classes whose documents may hold report text.
SR_STORAGE = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
})


def _concept(item: pydicom.Dataset) -> str:
    names = item.get("ConceptNameCodeSequence") or []
    return str(names[0].get("CodeMeaning", "")).strip() if names else ""


def _paragraphs(items: pydicom.Sequence, section: str) -> list[str]:
    """The text of ``items`` and their children, in order; a heading opens a section that has text."""
    out: list[str] = []
    for item in items:
        if item.get("RelationshipType", "CONTAINS") != "CONTAINS" or item.get("ValueType") not in ("TEXT", "CONTAINER"):
            continue
        concept = _concept(item)
        name = SECTION_OF_HEADING.get(" ".join(concept.lower().split()), "")
        opens = bool(name) and name != section and (item.get("ValueType") == "CONTAINER" or not section)
        inner = [str(item.TextValue).strip()] if item.get("ValueType") == "TEXT" and str(
            item.get("TextValue", "")).strip() else []
        inner += _paragraphs(item.get("ContentSequence") or [], name if opens else section)
        out += [f"\n{concept}:", *inner] if opens and inner else inner
    return out


def read_sr_report(path: str | Path, *, name: str = "") -> RawReport:
    """The report text of one SR document, with the ids that link it (its study UID first).

    ``name`` is the path recorded for it (default: ``path``): a DICOM export names folders after
    patients, so the pipeline passes the pseudonymized relative path.

    Raises
    ------
    ReportError
        (``unreadable_report``) if the file cannot be read (a document without text items gives
        an empty report, which the stage quarantines as such).
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # read once: parsed and hashed
        ds = pydicom.dcmread(io.BytesIO(data))
        out = _paragraphs(ds.get("ContentSequence") or [], "")
    except Exception as exc:  # noqa: BLE001 - a broken SR fails in many ways; it costs this report only
        raise ReportError(f"the SR document cannot be read ({type(exc).__name__}: {exc})",
                          reason=QuarantineReason.UNREADABLE_REPORT, path=name or path) from None
    text = "\n".join(out).strip()
    return RawReport(
        path=name or str(path), row=0, accession_number=str(ds.get("AccessionNumber", "")).strip(),
        patient_id=str(ds.get("PatientID", "")).strip(), study_date=normalize_date(str(ds.get("StudyDate", ""))),
        report_time=normalize_time(f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}"
                                   f"{ds.get('TimezoneOffsetFromUTC', '')}", utc=True), text=text,
        language="", patient_name=str(ds.get("PatientName", "")), encoding="dicom-sr", markup="",
        source_sha256=hashlib.sha256(data).hexdigest(), study_uid=str(ds.get("StudyInstanceUID", "")).strip(),
    )
