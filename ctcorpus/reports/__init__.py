"""Reports stage: read RIS exports, link them to studies, scrub PHI, find sections, sentences,
anatomies and the 18 CT-RATE label states (English and German rules).

Entry point: :func:`process_reports`; :func:`analyze_report` runs the NLP on one text,
:func:`analyze_reports` on many (batched: faster).
"""

from ctcorpus.reports.io import read_report_export
from ctcorpus.reports.markup import decode_bytes
from ctcorpus.reports.language import detect_language
from ctcorpus.reports.link import Link, link_reports
from ctcorpus.reports.nlp import (
    AnalyzedReport,
    ReportAnalyzer,
    ReportText,
    Section,
    Sentence,
    analyze_report,
    analyze_reports,
    build_analyzer,
)
from ctcorpus.reports.phi import PhiHit, Scrubbed, find_phi, scrub_text
from ctcorpus.reports.records import (
    LabelRow,
    RawReport,
    ReportExport,
    ReportRow,
    ReportsResult,
    SentenceRow,
    StudyKey,
)
from ctcorpus.reports.sr import SR_STORAGE, read_sr_report
from ctcorpus.reports.stage import PRODUCER, analysis_settings, date_shift_days, process_reports, reports_tables

__all__ = [
    "AnalyzedReport",
    "LabelRow",
    "Link",
    "PRODUCER",
    "PhiHit",
    "SR_STORAGE",
    "RawReport",
    "ReportAnalyzer",
    "ReportExport",
    "ReportText",
    "ReportRow",
    "ReportsResult",
    "Scrubbed",
    "Section",
    "Sentence",
    "SentenceRow",
    "StudyKey",
    "analysis_settings",
    "analyze_report",
    "analyze_reports",
    "build_analyzer",
    "date_shift_days",
    "decode_bytes",
    "detect_language",
    "find_phi",
    "link_reports",
    "process_reports",
    "read_report_export",
    "read_sr_report",
    "reports_tables",
    "scrub_text",
]
