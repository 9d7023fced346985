"""Audit a corpus before anyone trains on it: label and corpus statistics, leaks between splits,
duplicate volumes and reports, overlap with another corpus, a diff between versions, and a
self-contained HTML report (plus the same numbers as JSON).

The core (:func:`audit_corpus`) is pure over :class:`CorpusTables` (pandas DataFrames); the shell
reads a corpus folder (:func:`load_corpus_tables`) and writes the report (:func:`write_audit_report`).

>>> result = audit_corpus(load_corpus_tables("out/v2"), against=load_corpus_tables("out/v1"))  # doctest: +SKIP
>>> html_path, json_path = write_audit_report(result, "out/v2/audit")                        # doctest: +SKIP
"""

from ctcorpus.audit.core import AuditResult, audit_corpus
from ctcorpus.audit.diff import CorpusDiff, SampleDiff, diff_corpora
from ctcorpus.audit.findings import LEAK_KINDS, Finding, FindingKind, Severity
from ctcorpus.audit.fingerprint import FINGERPRINT_SIZE, FINGERPRINT_VERSION, volume_fingerprint
from ctcorpus.audit.report import render_html, result_to_dict, write_audit_report
from ctcorpus.audit.stats import CorpusStats, corpus_statistics
from ctcorpus.audit.tables import COLUMNS, CorpusTables, load_corpus_tables

__all__ = [
    "AuditResult",
    "COLUMNS",
    "CorpusDiff",
    "CorpusStats",
    "CorpusTables",
    "FINGERPRINT_SIZE",
    "FINGERPRINT_VERSION",
    "Finding",
    "FindingKind",
    "LEAK_KINDS",
    "SampleDiff",
    "Severity",
    "audit_corpus",
    "corpus_statistics",
    "diff_corpora",
    "load_corpus_tables",
    "render_html",
    "result_to_dict",
    "volume_fingerprint",
    "write_audit_report",
]
