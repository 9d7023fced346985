"""The reports stage entry point: exports in, linked and scrubbed report/sentence/label rows out."""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import ParamSpec, TypeVar
from pathlib import Path

import pyarrow as pa
import spacy

from ctcorpus import pseudonym, taxonomy
from ctcorpus.config.reports import ReportsConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import CtCorpusError, ReportError
from ctcorpus.records import ErrorHandler, QuarantineEntry, raise_on_error, sha256_of_hashes
from ctcorpus.reports import io, language, lexicon, link, markup, nlp, oru, patterns, phi, sr
from ctcorpus.reports.io import read_report_export
from ctcorpus.reports.language import SUPPORTED_LANGUAGES
from ctcorpus.pseudonym import accession_key, id_key
from ctcorpus.reports.link import link_by_accession, link_reports, link_sr_reports
from ctcorpus.reports.sr import read_sr_report
from ctcorpus.reports.nlp import AnalyzedReport, ReportText, analyze_reports, build_analyzer
from ctcorpus.reports.records import LabelRow, RawReport, ReportRow, ReportsResult, SentenceRow, StudyKey
from ctcorpus.schemas import table_from_rows
from ctcorpus.version import __version__, source_digest

__all__ = ["PRODUCER", "analysis_settings", "date_shift_days", "process_reports", "reports_tables"]


def _rules_digest() -> str:
    """The source of the modules that turn export rows into table rows (reading, markup
    conversion, HL7 messages, SR documents, linking and the id keys it compares, rules, this
    stage: versions, linking, quarantine)."""
    modules = (io, markup, oru, sr, link, pseudonym, language, lexicon, nlp, patterns, phi, taxonomy)
    return source_digest([*(str(module.__file__) for module in modules), __file__])


#: The backend recorded in every row's ``producer``; part of the pipeline's reports cache key.
PRODUCER = f"rules-{_rules_digest()}+spacy-{spacy.__version__}"

STAGE = "reports"
logger = logging.getLogger(__name__)
#: A progress line every this many reports (a site's history is hundreds of thousands: minutes).
PROGRESS_EVERY = 10_000

#: ``pseudonymize(kind, value)``: kinds "pat", "stu", "acc" (``ctcorpus.pseudonym.Pseudonymizer.make``).
Pseudonymize = Callable[[str, str], str]


def _identity(kind: str, value: str) -> str:
    return value


def analysis_settings(config: ReportsConfig) -> str:
    """A digest of what a report's analysis depends on besides its own inputs: the rules
    (:data:`PRODUCER`) and the ``reports`` config. Results stored under other settings hold no
    analysis this run can reuse, so a caller need not even load them."""
    return hashlib.sha256(json.dumps([PRODUCER, config.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()


def date_shift_days(pseudonymized_patient: str, max_days: int) -> int:
    """The per-patient date offset: keyed (derived from the keyed pseudonym), in ±[1, max_days].

    >>> date_shift_days("pat-1f3a", 365) == date_shift_days("pat-1f3a", 365) != 0
    True
    """
    n = int.from_bytes(hashlib.sha256(b"dateshift\x00" + pseudonymized_patient.encode()).digest()[:8], "big")
    n %= 2 * max_days
    return n - max_days if n < max_days else n - max_days + 1


def _shared_accessions(reports: Sequence[RawReport]) -> frozenset[str]:
    """The accession numbers (by :func:`accession_key`) that rows of more than one patient carry.

    Accession numbers are unique within one RIS only (two sites count alike; "00123" and "123"):
    such rows are told apart by patient too, as versions of a report and by report id, so that
    one patient's report is never taken for a version of another's or mixed into its rows.
    """
    patients: dict[str, set[str]] = defaultdict(set)
    for r in reports:
        if (key := accession_key(r.accession_number)) and r.patient_id:
            patients[key].add(id_key(r.patient_id))
    return frozenset(key for key, ids in patients.items() if len(ids) > 1)


def _report_id(report: RawReport, pseudonymize: Pseudonymize, shared: Collection[str] = frozenset()) -> str:
    """The report's pseudonymized id: its accession number's, with the patient id where
    ``shared`` says other patients' rows carry the number too."""
    if key := accession_key(report.accession_number):
        if key in shared:
            return pseudonymize("acc", f"{report.accession_number}|{report.patient_id}")
        return pseudonymize("acc", report.accession_number)
    text_hash = hashlib.sha256(report.text.encode()).hexdigest()[:16]
    return pseudonymize("acc", f"{report.patient_id}|{report.study_date}|{text_hash}")


def _version_order(report: RawReport, index: int) -> tuple[bool, str, bool, int]:
    """Where a version of a report stands among the others (the last is used).

    A preliminary version comes before every other whatever its time: an interface engine
    resends it later, or stamps it with the message time (MSH-7) where the final carries its
    result time (OBR-22). The others go by report time (none counts as older), a correction
    after a final of the same time, then by export order (``index``).
    """
    return report.result_status != "preliminary", report.report_time, report.result_status == "corrected", index


def _version_keys(reports: Sequence[RawReport], indices: Sequence[int]) -> dict[int, tuple[bool, str, bool, int]]:
    """:func:`_version_order` of the versions ``indices`` of one report (in export order), except
    that a cancel without a report time stands right after the versions exported before it: a RIS
    leaves a withdrawn report's signing time empty, and counted as older than a timed final, the
    cancel withdrew nothing and the cancelled (wrong-patient) report was used."""
    keys: dict[int, tuple[bool, str, bool, int]] = {}
    latest: tuple[bool, str, bool, int] | None = None  # the last key of the versions exported so far
    for i in indices:
        undated_cancel = reports[i].result_status == "cancelled" and not reports[i].report_time
        keys[i] = (*latest[:3], i) if undated_cancel and latest else _version_order(reports[i], i)
        latest = max(latest or keys[i], keys[i])
    return keys


def _one_row_per_accession(
    reports: Sequence[RawReport], policy: str, shared: Collection[str] = frozenset()
) -> tuple[list[RawReport], list[tuple[RawReport, RawReport]], list[RawReport]]:
    """The rows with one row per accession number (per accession number and patient for the
    numbers in ``shared``), each superseded row with the row that replaces or cancels it, and the
    cancel of each report that ends cancelled (its study is named as having its report cancelled).

    Rows sharing an accession number and holding different (non-empty) texts are versions of one
    report or its addenda; left as they are they would become two reports with one id and one
    sample with both reports' sentences. Versions are ordered by :func:`_version_keys`. A
    cancelled version (an HL7 cancel: OBR-25 X, MDM T11; or a status column's) withdraws the
    versions before it and is no report itself: a report cancelled last (or only cancelled: a lone
    cancel row) is not used at all. Of
    the versions after the last cancel, ``policy`` "latest" keeps the last, and an addendum (MDM
    T06, or a status column's, which carries the addendum alone) keeps the version before it too;
    "join" joins the texts in order into the last row (provenance: all their files), each text once:
    a final signed unchanged repeats its preliminary's text, and joined twice, every sentence of the
    report stood in it twice.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(reports):
        if (key := accession_key(r.accession_number)) and (r.text.strip() or r.result_status == "cancelled"):
            groups[key, id_key(r.patient_id) if key in shared else ""].append(i)
    rows = list(reports)
    superseded: list[tuple[RawReport, RawReport]] = []
    cancels: list[RawReport] = []
    dropped: set[int] = set()
    for indices in groups.values():
        indices.sort(key=_version_keys(reports, indices).__getitem__)
        cut = max((k + 1 for k, i in enumerate(indices) if reports[i].result_status == "cancelled"), default=0)
        superseded.extend((reports[i], reports[indices[cut - 1]]) for i in indices[:cut]
                          if reports[i].result_status != "cancelled")
        dropped.update(indices[:cut])
        kept = indices[cut:]
        if cut and not kept:
            cancels.append(reports[indices[cut - 1]])
        if len(kept) < 2:
            continue
        versions = [reports[i] for i in kept]
        last = versions[-1]
        dropped.update(kept[:-1])
        # "latest" joins the last version that is no addendum with the addenda after it
        start = 0 if policy == "join" else max(
            (k for k, v in enumerate(versions) if v.result_status != "addendum"), default=0)
        superseded.extend((v, last) for v in versions[:start])
        if start < len(versions) - 1:
            joined = versions[start:]
            files = {v.source_sha256 for v in joined}
            rows[kept[-1]] = dataclasses.replace(
                last, text="\n\n".join(dict.fromkeys(v.text.strip("\n") for v in joined)),
                markup="+".join(dict.fromkeys(m for v in joined for m in v.markup.split("+") if m)),
                source_sha256=last.source_sha256 if len(files) == 1 else sha256_of_hashes(files),
            )
    # a cancel without an accession number withdraws nothing, and is no report either
    kept_rows = [r for i, r in enumerate(rows) if i not in dropped and r.result_status != "cancelled"]
    return kept_rows, superseded, cancels


def _orphan_reason(report: RawReport, window_days: int) -> str:
    """Why a report linked to no study, in the terms of the rules that were tried."""
    if report.encoding == "dicom-sr":  # linked by its study UID alone
        return ("the SR document's study has no images in the export (StudyInstanceUID matches no study)"
                if report.study_uid else "the SR document has no StudyInstanceUID, by which alone an SR links to its "
                "study (a DICOM SR must have one): fix the document where it was made")
    number = "no study with this accession number" if accession_key(report.accession_number) else "no accession number"
    if not report.study_date:  # a value that is no date was logged with the file, row and value
        tried = ("no study date to link it by patient and date (the cell is empty, the export has no such column, or "
                 "it holds no date ctcorpus reads: the log names the column or value)")
    elif accession_key(report.accession_number):
        tried = (f"no unreported study of this patient without an accession number within {window_days} days (a "
                 "study with another number is another exam)")
    else:
        tried = f"no unreported study of this patient within {window_days} days"
    return f"{report.location}: {number}, and {tried}; check the export's ids and dates or reports.link_window_days"


def _accession_of_patient(study: StudyKey) -> tuple[str, str]:
    """The study's accession number and patient id as linking compares them."""
    return accession_key(study.accession_number), id_key(study.patient_id)


@dataclasses.dataclass(frozen=True, slots=True)
class _ToAnalyze:
    """A linked report whose analysis is to run: what it reads and the row fields it does not make."""

    request: ReportText
    report: RawReport
    where: str  # how messages name the report
    linking: dict[str, str]  # the ReportRow fields not analyzed
    analysis_key: str


@dataclasses.dataclass(frozen=True, slots=True)
class _ReportRows:
    """A report's rows in the three tables, and the key of the analysis they hold."""

    report: ReportRow
    sentences: list[SentenceRow]
    labels: list[LabelRow]
    analysis_key: str
    reused: bool = False  # from the previous run's result


def _rows_of(analyzed: AnalyzedReport, step: _ToAnalyze) -> _ReportRows:
    """The rows of an analyzed report."""
    report_id, source = step.linking["report_id"], step.report.source_sha256
    counts = Counter(hit.kind for hit in analyzed.phi)
    row = ReportRow(
        **step.linking, language=analyzed.language, text=analyzed.text,
        section_names=tuple(s.name for s in analyzed.sections),
        section_starts=tuple(s.start for s in analyzed.sections),
        section_ends=tuple(s.end for s in analyzed.sections),
        n_sentences=len(analyzed.sentences), phi_names=counts["name"], phi_dates=counts["date"],
        phi_ids=counts["id"], phi_phones=counts["phone"], phi_addresses=counts["address"],
        phi_ages=counts["age"],
    )
    # comprehensions, not a generator per sentence: most sentences state no label
    sentences = [SentenceRow(report_id, s.index, s.section, analyzed.text[s.start:s.end], s.start, s.end,
                             s.anatomies, source) for s in analyzed.sentences]
    labels = [LabelRow(report_id, s.index, label, state.value, source)
              for s in analyzed.sentences if s.labels for label, state in sorted(s.labels.items())]
    labels += [LabelRow(report_id, -1, label, state.value, source)
               for label, state in sorted(analyzed.labels.items())]
    return _ReportRows(row, sentences, labels, step.analysis_key)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _existing_objects_frozen(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` run with the objects that live when it starts left out of garbage collection (``gc.freeze``).

    The reports stage keeps a few dozen rows per report alive, and each time they add up to a
    quarter of the objects already there, Python's collector walks all of them: the imported
    libraries (spaCy, pandas, pyarrow) and the compiled rules, some 300,000 objects that never
    die. Frozen, they are not walked, and the stage runs about a seventh faster. One collection
    first (~0.1 s) frees the garbage of earlier work, which frozen would outlive the stage. A caller
    that froze objects itself keeps them frozen; the freeze is the process's, so one that another
    thread makes while the stage runs is undone with the stage's.
    """
    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if gc.get_freeze_count():
            return fn(*args, **kwargs)
        gc.collect()
        gc.freeze()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.unfreeze()
    return run


@_existing_objects_frozen
def process_reports(
    paths: Sequence[str | Path],
    studies: Sequence[StudyKey],
    *,
    config: ReportsConfig | None = None,
    pseudonymize: Pseudonymize = _identity,
    header_names: Mapping[str, Sequence[str]] | None = None,
    on_error: ErrorHandler = raise_on_error,
    sr_documents: Sequence[tuple[str | Path, str]] = (),
    sr_image_numbers: Mapping[str, tuple[int, int]] | None = None,
    previous: ReportsResult | None = None,
) -> ReportsResult:
    """Read, link, scrub and label every report of the given exports (and of the DICOM SR
    documents, for the studies the exports give no report).

    Orphan reports (no study), empty reports, reports in a language the rules do not read
    (``config.language`` "auto" only) and studies without a report are not dropped silently: each
    becomes a :class:`~ctcorpus.records.QuarantineEntry` in the result. An unreadable export, or
    an unreadable line of one, goes to ``on_error`` (raises by default).

    Parameters
    ----------
    paths:
        RIS exports (.csv/.tsv, .jsonl, .parquet).
    studies:
        The ingested studies to link to (original ids).
    config:
        The ``reports`` config section.
    pseudonymize:
        ``(kind, value) -> pseudonym`` for kinds "pat", "stu", "acc"; pass
        ``Pseudonymizer.make`` so ids join with the ingest tables. Identity by default (tests).
    header_names:
        patient id -> names known from the DICOM headers, scrubbed wherever they appear.
    on_error:
        Handler for unreadable exports and lines (:class:`~ctcorpus.records.QuarantineLog` to continue).
    sr_documents:
        DICOM SR files of the export and the path each is recorded under (``config.dicom_sr``): a
        study without a report with text in the exports takes its latest SR document's report,
        linked by study UID.
    sr_image_numbers:
        SOP Instance UID -> (series number, instance number) of the export's images: an SR
        finding's image reference is cited with them, "(series 3, image 45)", and mined as a snippet.
    previous:
        An earlier run's result: a report whose analysis inputs are unchanged (the same text, PHI
        values, language, date shift, rules and config) takes its rows from there instead of being
        analyzed again, so a scheduled run over a grown export analyzes the new reports only.

    Examples
    --------
    >>> result = process_reports(["ris.csv"], [StudyKey("1.2.3", "A1", "P1", "20240105")])  # doctest: +SKIP
    >>> tables = reports_tables(result)                                                      # doctest: +SKIP
    """
    config = config or ReportsConfig()
    analyzer = build_analyzer(
        extra_synonyms=config.extra_synonyms, extra_anatomy_terms=config.extra_anatomy_terms,
        label_sections=config.label_sections,
    )
    raw: list[RawReport] = []
    for path in paths:
        try:
            export = read_report_export(path, config.columns)
        except CtCorpusError as error:
            on_error(error, STAGE)
            continue
        raw.extend(export.reports)
        for problem in export.problems:
            on_error(problem, STAGE)
    seen: set[tuple[str, str, str, str, str]] = set()
    unique: list[RawReport] = []
    for r in raw:  # first occurrence wins; ids as linking compares them (a spreadsheet drops leading zeros);
        # a final or a cancel that repeats the preliminary's text is another version, not a copy
        key = (id_key(r.accession_number), id_key(r.patient_id), r.study_date, r.text, r.result_status)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    if len(unique) < len(raw):  # the same RIS rows exported twice (e.g. CSV and JSONL)
        logger.info("reports: %d duplicate rows across exports kept once", len(raw) - len(unique))
    shared = _shared_accessions(unique)
    unique, superseded, cancels = _one_row_per_accession(unique, config.same_accession, shared)
    links = link_reports(unique, studies, window_days=config.link_window_days)
    # a study whose report the exports cancel: its no_report row names the cancel (by accession number only)
    cancelled = {k.study.study_uid: k.report for k in link_by_accession(cancels, studies) if k.study is not None}
    documents: list[RawReport] = []
    for path, name in sr_documents if config.dicom_sr else ():
        try:
            documents.append(read_sr_report(path, name=name, image_numbers=sr_image_numbers or {}))
        except CtCorpusError as error:
            on_error(error, STAGE)
    reported = {k.study.study_uid for k in links if k.study is not None and k.report.text.strip()}
    sr_links, sr_superseded = link_sr_reports(documents, studies, reported)
    if kept := len(reported.intersection(d.study_uid for d in documents if d.text.strip())):
        logger.info("reports: %d studies with a report in the exports keep it over their DICOM SR report", kept)
    quarantine: list[QuarantineEntry] = [
        QuarantineEntry(
            stage=STAGE, path=old.path, reason=QuarantineReason.SUPERSEDED_REPORT,
            message=str(ReportError(
                f"an earlier SR document of the study than {new.path}, which is used" if old.study_uid else
                f"{old.location} is a version of the report that {new.path} {new.location} cancels (same accession "
                "number; a cancelled status: HL7 OBR-25 X, MDM T11 or the export's status column), so it is not "
                "used" if new.result_status == "cancelled" else
                f"{old.location} is an earlier version of the report in {new.path} {new.location} (same accession "
                "number), which is used; set reports.same_accession: join if the RIS exports addenda as rows",
                path=old.path, reason=QuarantineReason.SUPERSEDED_REPORT)),
            item_id=_report_id(old, pseudonymize, shared),
        )
        for old, new in (*superseded, *sr_superseded)
    ]
    reported_studies: set[str] = set()
    reusable = _rows_by_analysis_key(previous)
    settings = analysis_settings(config)
    linked_reports = (*links, *sr_links)
    # each linked report's outcome, in order: a quarantine row, its rows reused, or its analysis to run
    steps: list[QuarantineEntry | _ReportRows | _ToAnalyze] = []
    for linked in linked_reports:
        report = linked.report
        report_id = _report_id(report, pseudonymize, shared)
        where = "the SR document" if report.encoding == "dicom-sr" else report.location
        if linked.study is not None:
            reported_studies.add(linked.study.study_uid)
        if not report.text.strip():  # its study counts as reported: one quarantine row, not two
            steps.append(QuarantineEntry(
                stage=STAGE, path=report.path, reason=QuarantineReason.EMPTY_REPORT,
                message=str(ReportError(f"{where} has an empty report text", path=report.path,
                                        reason=QuarantineReason.EMPTY_REPORT)),
                item_id=report_id,
            ))
            continue
        if linked.study is None and linked.conflict is not None:
            whose = ("whose patient id differs from the row's" if report.patient_id else
                     "and of a study of another patient, and the row has no patient id to tell which is its")
            steps.append(QuarantineEntry.from_error(ReportError(
                f"{report.location}: its accession number is that of study "
                f"{pseudonymize('stu', linked.conflict.study_uid)}, {whose}; a "
                "report is never linked to another patient's study: check the export's patient ids and accession "
                "numbers", path=report.path, reason=QuarantineReason.PATIENT_MISMATCH), STAGE, report_id))
            continue
        if linked.study is None and linked.candidates:
            steps.append(QuarantineEntry.from_error(ReportError(
                f"{report.location}: it links by patient and date, and the studies "
                f"{', '.join(pseudonymize('stu', s.study_uid) for s in linked.candidates)} of its patient are as "
                "close in date: which exam it reports cannot be told, and a guess may pair it with another exam's "
                "images, so it is linked to none; give the export's rows accession numbers", path=report.path,
                reason=QuarantineReason.AMBIGUOUS_LINK), STAGE, report_id))
            continue
        if linked.study is None and linked.claimed_nearer:
            steps.append(QuarantineEntry.from_error(ReportError(
                f"{report.location}: it links by patient and date, and a report nearer in date to the study "
                f"{', '.join(pseudonymize('stu', s.study_uid) for s in linked.claimed_nearer)} of its patient in its "
                "window is as close to another study: whether it reports that exam turns on which one the nearer "
                "report does, which cannot be told, so it is linked to none; give the export's rows accession "
                "numbers", path=report.path, reason=QuarantineReason.AMBIGUOUS_LINK), STAGE, report_id))
            continue
        if linked.study is None:
            steps.append(QuarantineEntry(
                stage=STAGE, path=report.path, reason=QuarantineReason.ORPHAN_REPORT,
                message=str(ReportError(_orphan_reason(report, config.link_window_days), path=report.path,
                                        reason=QuarantineReason.ORPHAN_REPORT)),
                item_id=report_id,
            ))
            continue
        # the study's patient id, as the image tables pseudonymize it (the RIS may spell it otherwise: id_key)
        patient = pseudonymize("pat", linked.study.patient_id or report.patient_id)
        known = header_names or {}
        header = [report.patient_name, report.patient_id, report.accession_number, *report.phi_values,
                  linked.study.accession_number, linked.study.patient_id, *linked.study.requested_accession_numbers,
                  *known.get(linked.study.patient_id, ()), *known.get(report.patient_id, ())]
        stated = report.language  # a language code the export gives ("" or e.g. "unknown": none)
        if config.language == "auto" and len(stated) == 2 and stated.isalpha() and stated not in SUPPORTED_LANGUAGES:
            steps.append(QuarantineEntry.from_error(ReportError(
                f"{report.location}: the export's language column says {stated!r}, not English or German, the "
                "languages the rules read; set reports.language to read it as one of them",
                path=report.path, reason=QuarantineReason.UNSUPPORTED_LANGUAGE), STAGE, report_id))
            continue
        hint = stated if stated in SUPPORTED_LANGUAGES else (None if config.language == "auto" else config.language)
        shift = date_shift_days(patient, config.date_shift_max_days) if config.date_policy == "shift" else None
        values = [h for h in header if h]
        key = hashlib.sha256(json.dumps([settings, report.text, values, hint, shift]).encode()).hexdigest()
        linking = {"report_id": report_id, "source_sha256": report.source_sha256,  # the row's fields not analyzed
                   "study_id": pseudonymize("stu", linked.study.study_uid), "patient_id": patient,
                   "link_method": linked.method, "encoding": report.encoding, "markup": report.markup,
                   "result_status": report.result_status, "source_path": report.path}
        if (known_rows := reusable.get(key)) is not None:  # analyzed by an earlier run: its rows, linked anew
            earlier, earlier_sentences, earlier_labels = known_rows
            # built, not dataclasses.replace()d: these are most rows of a re-run, and replace() costs 10x
            steps.append(_ReportRows(
                dataclasses.replace(earlier, **linking),
                [SentenceRow(report_id, s.sentence_index, s.section, s.text, s.char_start, s.char_end, s.anatomies,
                             report.source_sha256) for s in earlier_sentences],
                [LabelRow(report_id, label.sentence_index, label.label, label.state, report.source_sha256)
                 for label in earlier_labels],
                key, reused=True))
            continue
        steps.append(_ToAnalyze(ReportText(report.text, hint, values, shift), report, where, linking, key))
    reports: list[ReportRow] = []
    sentences: list[SentenceRow] = []
    labels: list[LabelRow] = []
    analysis_keys: dict[str, str] = {}
    reused = 0
    # analyzed in batches, in the order of the steps that take them (see nlp.analyze_reports)
    analyses = analyze_reports(analyzer, (step.request for step in steps if isinstance(step, _ToAnalyze)))
    for n, step in enumerate(steps):
        if n and n % PROGRESS_EVERY == 0:
            logger.info("reports progress done=%d total=%d reused=%d", n, len(steps), reused)
        if isinstance(step, QuarantineEntry):
            quarantine.append(step)
            continue
        if isinstance(step, _ToAnalyze):
            analyzed = next(analyses)
            if isinstance(analyzed, ReportError):  # a report in a language the rules do not read
                located = ReportError(f"{step.where}: {analyzed.message}", path=step.report.path,
                                      reason=analyzed.reason)
                quarantine.append(QuarantineEntry.from_error(located, STAGE, step.linking["report_id"]))
                continue
            rows = _rows_of(analyzed, step)
        else:
            rows = step
        reports.append(rows.report)
        sentences += rows.sentences
        labels += rows.labels
        analysis_keys[rows.report.report_id] = rows.analysis_key
        reused += rows.reused
    # (accession number, patient) of each study that took a report by it: a study sharing both got none
    taken = {_accession_of_patient(k.study) for k in links if k.study is not None and k.method == "accession"}
    contested = {s.study_uid for k in links if k.report.text.strip() for s in k.candidates}  # of ambiguous_link rows
    for study in sorted(studies, key=lambda s: s.study_uid):
        if study.study_uid in reported_studies:
            continue
        if (cancel := cancelled.get(study.study_uid)) is not None:
            detail = (f"its report cancelled: {cancel.path} {cancel.location} has a cancelled status for the "
                      "accession number (HL7 OBR-25 X, MDM T11 or the export's status column) and no version of "
                      "the report follows it")
        else:
            shares = ("; its accession number is also that of another study of the patient, which took the report "
                      "(the smallest StudyInstanceUID)" if study.accession_number
                      and _accession_of_patient(study) in taken else "")
            if study.study_uid in contested:
                shares += "; a report as close in date to it as to another study of the patient links to neither"
            detail = f"no report in {len(paths)} export(s) (accession or patient/date window){shares}"
        # the accession number's pseudonym is the instances table's accession_id: the study is found by it
        number = (f"accession number {pseudonymize('acc', study.accession_number)}"
                  if accession_key(study.accession_number) else "no accession number")
        quarantine.append(QuarantineEntry.from_error(ReportError(
            f"the study ({number}) has {detail}", path=study.path or None, reason=QuarantineReason.NO_REPORT),
            STAGE, pseudonymize("stu", study.study_uid)))
    if previous is not None:
        logger.info("reports: %d of %d analyses reused from the previous run", reused, len(reports))
    return ReportsResult(tuple(reports), tuple(sentences), tuple(labels), tuple(quarantine), analysis_keys)


def _rows_by_analysis_key(
    result: ReportsResult | None,
) -> dict[str, tuple[ReportRow, list[SentenceRow], list[LabelRow]]]:
    """An earlier result's rows of each report, by the digest of its analysis inputs."""
    if result is None:
        return {}
    sentences: dict[str, list[SentenceRow]] = defaultdict(list)
    for s in result.sentences:
        sentences[s.report_id].append(s)
    labels: dict[str, list[LabelRow]] = defaultdict(list)
    for label in result.labels:
        labels[label.report_id].append(label)
    return {key: (row, sentences[row.report_id], labels[row.report_id]) for row in result.reports
            if (key := result.analysis_keys.get(row.report_id))}


def reports_tables(result: ReportsResult) -> dict[str, pa.Table]:
    """The ``reports``, ``sentences`` and ``labels`` Arrow tables of a result (schemas in ``schemas/``)."""
    provenance = {"pipeline_version": __version__, "producer": PRODUCER}
    return {
        "reports": table_from_rows("reports", result.reports, **provenance),
        "sentences": table_from_rows("sentences", result.sentences, **provenance),
        "labels": table_from_rows("labels", result.labels, **provenance),
    }
