"""Records of the reports stage: inputs (study keys, raw report rows) and the rows of its tables.

The row records mirror ``schemas/reports.json``, ``schemas/sentences.json`` and
``schemas/labels.json`` field for field (a test checks it); provenance columns other than
``source_sha256`` are added when the tables are built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ctcorpus.errors import ReportError
from ctcorpus.records import QuarantineEntry

__all__ = ["LabelRow", "RawReport", "ReportExport", "ReportRow", "ReportsResult", "ResultStatus", "SentenceRow",
           "StudyKey"]

#: What an export says a report is (an HL7 message's result or document completion status, or an
#: addendum to the report; a table export's status column); "" where it says nothing.
ResultStatus = Literal["", "preliminary", "final", "corrected", "addendum", "cancelled"]


@dataclass(frozen=True, slots=True)
class StudyKey:
    """What report linking needs to know about an ingested study (original, not pseudonymized, ids)."""

    study_uid: str
    accession_number: str
    patient_id: str
    study_date: str  # YYYYMMDD, "" if unknown
    #: the other orders' accession numbers the study fulfils (its RequestAttributesSequence)
    requested_accession_numbers: tuple[str, ...] = ()
    #: a file of the study, relative to the export root: the quarantine names a study without a report by it
    path: str = ""


@dataclass(frozen=True, slots=True)
class RawReport:
    """One row of a RIS export (or one DICOM SR document), decoded, before any NLP."""

    path: str
    #: where the row stands in its file, as a user finds it there (counted from 1): "line 5" of a CSV,
    #: TSV or JSON Lines export (where the row starts: a quoted field's line breaks make rows and lines
    #: differ), "row 5" of a Parquet file or of an Excel sheet (the row number Excel shows), "item 5" of
    #: a JSON array, "message 5" of an HL7 file ("message 5, order 2" of one carrying several); "" for
    #: a DICOM SR document
    location: str
    accession_number: str
    patient_id: str
    study_date: str  # normalized to YYYYMMDD, "" if absent or unparseable
    report_time: str  # when written or signed, YYYYMMDDHHMMSS, "" if absent or unparseable
    text: str
    language: str  # "en"/"de" from the export, "" if not given
    patient_name: str
    encoding: str  # how the file was decoded ("utf-8", "cp1252", "latin-1", "utf-16", "parquet", "xlsx", "dicom-sr")
    markup: str  # what the text was converted from: "" (plain), "rtf" or "html"
    source_sha256: str
    study_uid: str = ""  # the study a DICOM SR document belongs to ("" for an export row)
    #: other PHI the export gives for this report (reports.columns.phi; an ORU message's other ids
    #: and names), scrubbed from the text like the patient's name
    phi_values: tuple[str, ...] = ()
    #: orders versions of one report: a cancelled one withdraws the report (see the reports stage)
    result_status: ResultStatus = ""


@dataclass(frozen=True, slots=True)
class ReportExport:
    """One RIS export as read: its rows, and one error per line that could not be read (a bad
    JSONL line costs that line, not the export)."""

    reports: tuple[RawReport, ...]
    problems: tuple[ReportError, ...]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """A row of the ``reports`` table: one linked, scrubbed report."""

    report_id: str
    study_id: str
    patient_id: str
    link_method: str
    language: str
    text: str
    section_names: tuple[str, ...]
    section_starts: tuple[int, ...]
    section_ends: tuple[int, ...]
    n_sentences: int
    phi_names: int
    phi_dates: int
    phi_ids: int
    phi_phones: int
    phi_addresses: int
    phi_ages: int
    encoding: str
    markup: str
    result_status: str
    source_path: str
    source_sha256: str


@dataclass(frozen=True, slots=True)
class SentenceRow:
    """A row of the ``sentences`` table (offsets into the scrubbed ``reports.text``)."""

    report_id: str
    sentence_index: int
    section: str
    text: str
    char_start: int
    char_end: int
    anatomies: tuple[str, ...]
    source_sha256: str


@dataclass(frozen=True, slots=True)
class LabelRow:
    """A row of the ``labels`` table; ``sentence_index`` -1 is the report-level state."""

    report_id: str
    sentence_index: int
    label: str
    state: str
    source_sha256: str


@dataclass(frozen=True, slots=True)
class ReportsResult:
    """Everything :func:`~ctcorpus.reports.process_reports` produced, quarantine included."""

    reports: tuple[ReportRow, ...]
    sentences: tuple[SentenceRow, ...]
    labels: tuple[LabelRow, ...]
    quarantine: tuple[QuarantineEntry, ...]
    #: report id -> digest of what its analysis read (the original text, the PHI values, language,
    #: date shift, rules and config): a later run reuses the rows of a report whose digest it
    #: computes again. Kept in the work store only; it never reaches a corpus table.
    analysis_keys: Mapping[str, str] = field(default_factory=dict)
