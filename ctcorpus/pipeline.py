"""The stages composed: plan an export, process one study incrementally, record the run, build.

This is the functional core the flows and the CLI share. Each study is one unit of work (it can
run on a Dask worker); each stage result is stored under a key that hashes its inputs and the
config sections it depends on (:class:`~ctcorpus.outputs.WorkStore`), so

- re-running on an unchanged export computes nothing,
- a new study is processed alone,
- a changed config section re-does only the stages that read it,
- a killed run leaves complete results or none, and the next run finishes the rest.

>>> plan = plan_export(config, Path("out/work"))                        # doctest: +SKIP
>>> outcomes = [process_unit(u, config, Path("out/work")) for u in plan.units]  # doctest: +SKIP
>>> summary = record_run(plan, outcomes, Path("out/work"))              # doctest: +SKIP
>>> result = build_from_work(config, Path("out/work"), Path("out/dataset"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctcorpus.anatomy import SOURCE_DIGEST as ANATOMY_SOURCE
from ctcorpus.anatomy import make_segmenter, segment_volume, sentence_region, sentence_regions_table
from ctcorpus.anatomy import anatomy_stats_table, structure_stats
from ctcorpus.anatomy.stats import StructureStats
from ctcorpus.audit import FINGERPRINT_VERSION, volume_fingerprint
from ctcorpus.config import CorpusConfig, RunConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import CtCorpusError, IngestError
from ctcorpus.ingest import (
    InstanceRecord,
    ResampledVolume,
    Stack,
    candidate_groups,
    fallback_entry,
    finding_entry,
    index_export,
    ingest_stack,
    instance_rows,
    plan_stacks,
    pseudonymizer_for,
    series_row,
    unselected_entries,
)
from ctcorpus.ingest.filecache import DiscoveryCache
from ctcorpus.ingest.pipeline import stage_failed_entry, without_volume
from ctcorpus.ingest.tables import PRODUCER as INGEST_PRODUCER
from ctcorpus.ingest.tables import Redactor, safe_path
from ctcorpus.outputs import BuildResult, BuildUnit, StoredSample, WorkStore, build_dataset, encode_array, decode_array
from ctcorpus.outputs.dataset import manifest_geometry
from ctcorpus.outputs.store import atomic_write_bytes, write_parquet
from ctcorpus.pseudonym import Pseudonymizer
from ctcorpus.records import QuarantineEntry, QuarantineLog, sha256_file, sha256_of_hashes
from ctcorpus.reports import PRODUCER as REPORTS_PRODUCER
from ctcorpus.reports import SR_STORAGE, StudyKey, analysis_settings, process_reports, reports_tables
from ctcorpus.reports.records import LabelRow, ReportRow, ReportsResult, SentenceRow
from ctcorpus.schemas import load_schema, rows_from_table, table_from_rows
from ctcorpus.snippets import PRODUCER as SNIPPETS_PRODUCER
from ctcorpus.snippets import SentenceContext, SeriesSlices, VolumeGrid, mine_snippets, snippets_table, stack_slices
from ctcorpus.taxonomy import CT_RATE_LABELS
from ctcorpus.version import __version__, source_digest

log = logging.getLogger(__name__)

RUN_INDEX = "current_run.json"
#: Beside each stored quarantine table, and gathered for a run in the work folder: its rows with the
#: real paths and messages, which the corpus's quarantine table holds redacted (:func:`_save_quarantine`).
#: They are the stored rows: a text result's name the volume's files alone as their source, where the
#: build joins in the report's export (:func:`_with_report_source`).
PRIVATE_QUARANTINE = "quarantine_private.jsonl"
PIPELINE_PRODUCER = f"ctcorpus-{__version__}"
#: The text stage's source (this module: report.json, the samples row, how snippets are mined per
#: volume): part of its cache key, so a fixed step redoes the text results in a source install too.
TEXT_SOURCE = source_digest([__file__])


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StudyReport:
    """The linked, scrubbed report of one study, as the snippet miner and the shards need it: not
    its export's hash, which is no input of theirs (see :func:`_text_source`)."""

    report_id: str
    language: str
    text: str
    sections: tuple[tuple[str, int, int], ...]
    sentences: tuple[dict[str, Any], ...]  # index, section, start, end, text, anatomies, labels
    labels: tuple[tuple[str, str], ...]  # report level (label, state)


@dataclass(frozen=True, slots=True)
class StudyUnit:
    """One study: its stacks (all, for slice tables), the ones that may become volumes, its report."""

    unit_id: str  # pseudonymized study id
    patient_id: str  # pseudonymized
    stacks: tuple[Stack, ...]
    candidates: tuple[tuple[str, ...], ...]  # per corpus volume, stack keys best first (select.candidate_groups)
    report: StudyReport | None
    reports_key: str  # store key of the export's reports stage


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What discovery found: one unit per study plus export-level rows (instances, quarantine)."""

    units: tuple[StudyUnit, ...]
    export_key: str  # store key of the export-level tables
    reports_key: str
    quarantine: tuple[QuarantineEntry, ...]
    n_files: int
    config: dict[str, Any]  # the run's config as a manifest records it (CorpusConfig.recorded())
    reports_quarantined: int = 0  # rows the reports stage quarantined (exports, rows, reports)


@dataclass(frozen=True, slots=True)
class VolumeKeys:
    """Where one volume's stage results live in the work store."""

    volume_id: str
    ingest: str
    anatomy: str
    text: str


@dataclass(frozen=True, slots=True)
class UnitOutcome:
    """What processing one study did: its store keys and which stages ran vs were cached."""

    unit_id: str
    patient_id: str
    study_key: str  # store key of the study-level tables
    volumes: tuple[VolumeKeys, ...]
    computed: tuple[str, ...] = ()  # stage names computed in this run (one entry per result)
    cached: tuple[str, ...] = ()
    quarantined: int = 0  # quarantine rows of the stored results it names
    failed: str = ""  # the error of a study that failed after retries
    rejected: tuple[str, ...] = ()  # ingest keys of stacks rejected at assembly: their series row and reason


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Counts of one ingest run, for logs and the CLI."""

    studies: int
    volumes: int
    computed: dict[str, int]
    cached: dict[str, int]
    quarantined: int  # the rows a build of this run writes to tables/quarantine (a failed study: one)
    failed: int
    seconds: float

    def line(self) -> str:
        return (
            f"studies={self.studies} volumes={self.volumes} computed={self.computed} cached={self.cached} "
            f"quarantined={self.quarantined} failed={self.failed} seconds={self.seconds:.1f}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ keys


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _schema_versions(*tables: str) -> dict[str, int]:
    """The versions of the schemas of the tables a stage stores: part of its key, so a schema bump
    redoes its results instead of the build writing stored ones under the new version (``as_schema``)."""
    return {name: load_schema(name).version for name in tables}


def _section(config: CorpusConfig, name: str, *ignore: str) -> dict[str, Any]:
    data = config.model_dump(mode="json")[name]
    return {k: v for k, v in data.items() if k not in ignore}


def _pseudonymizing(config: CorpusConfig, p: Pseudonymizer, *ignore: str) -> dict[str, Any]:
    """The ingest config as the keys of results holding pseudonyms see it: the key's fingerprint
    in place of the key (a key from the environment is in no config)."""
    return _section(config, "ingest", "workers", "rehash", "pseudonym_key", "pseudonym_key_env", *ignore) | {"key_id": p.key_id}


#: Ingest settings that only choose which stacks become corpus volumes (ingest.select): no stack's
#: ingest result reads them, so a change ingests and segments only the stacks newly chosen.
_SELECTION = ("volumes_per_study", "max_primary_thickness_mm")


def _ingest_key(stack: Stack, config: CorpusConfig, p: Pseudonymizer) -> str:
    """Also keyed by the ingest producer (the ingest package's source): a fixed step redoes the volumes;
    and by the files' paths, which the slice rows and quarantine name: a renamed series folder redoes them."""
    files = sorted((r.rel_path, r.sha256) for r in stack.instances + stack.duplicates)
    return _digest("ingest", __version__, INGEST_PRODUCER, _schema_versions("series", "volumes", "slices", "quarantine"),
                   stack.stack_key, files, _pseudonymizing(config, p, *_SELECTION))


#: Anatomy settings no mask depends on: threads, and where the weights are and whether they may be fetched
#: (the segmenter's version names the weights themselves): moving them redoes no segmentation.
_ANATOMY_OPERATIONAL = ("nr_thr_resamp", "nr_thr_saving", "weights_path", "home_dir", "allow_download")


def _anatomy_key(ingest_key: str, config: CorpusConfig) -> str:
    """Also keyed by the segmenter ``backend: auto`` resolved to (provisioning weights later redoes the
    masks) and by the anatomy package's source (a fixed step redoes them)."""
    segmenter = _segmenter(config)
    resolved = f"{segmenter.name}-{segmenter.version}"
    return _digest("anatomy", __version__, ANATOMY_SOURCE, _schema_versions("anatomy_stats", "quarantine"), ingest_key,
                   _section(config, "anatomy", *_ANATOMY_OPERATIONAL), resolved)


def _text_key(ingest_key: str, anatomy_key: str, mask_outcome: str, unit: StudyUnit, config: CorpusConfig) -> str:
    """Also keyed by the stage's source and the grammar's version (the snippets producer): a new
    grammar re-mines; by the anatomy result's outcome (``mask.json``): a retried segmentation that
    now has a mask redoes it; by how many volumes the study has (:func:`_bare_image_series`); and by
    the study's report as the stage reads it (:class:`StudyReport`), not by its export's hash: a
    cumulative RIS export grown by a row re-does no study it held (see :func:`_text_source`)."""
    slices = [(s.stack_key, [r.sha256 for r in s.instances]) for s in unit.stacks]
    report = None if unit.report is None else asdict(unit.report)
    schemas = _schema_versions("samples", "snippets", "sentence_regions", "quarantine")
    return _digest(
        "text", __version__, TEXT_SOURCE, FINGERPRINT_VERSION, SNIPPETS_PRODUCER, schemas, ingest_key, anatomy_key, mask_outcome, slices,
        report, len(unit.candidates), _section(config, "snippets"),
    )


# -------------------------------------------------------------------------------------- planning


def _study_keys(stacks: Sequence[Stack]) -> list[StudyKey]:
    """One key per study; its requested accession numbers are those of all its images, since each
    series of a group case may carry only the order it was reconstructed for."""
    firsts: dict[str, InstanceRecord] = {}
    requested: dict[str, set[str]] = defaultdict(set)
    for stack in stacks:
        firsts.setdefault(stack.first.study_uid, stack.first)
        for record in stack.instances:
            requested[record.study_uid].update(record.requested_accession_numbers)
    return [
        StudyKey(uid, first.accession_number, first.patient_id, first.study_date,
                 tuple(sorted(requested[uid] - {first.accession_number})), first.rel_path)
        for uid, first in sorted(firsts.items())
    ]


def _header_names(stacks: Sequence[Stack]) -> dict[str, list[str]]:
    """Per patient id, the names the DICOM headers give: the report scrubber removes them wherever
    they stand, also without a title ("discussed with Smith") and when the RIS export has no name."""
    names: dict[str, set[str]] = defaultdict(set)
    for stack in stacks:
        if stack.first.patient_name:
            names[stack.first.patient_id].add(stack.first.patient_name)
    return {patient: sorted(values) for patient, values in sorted(names.items())}


#: Which report of a study its sample holds: the one filed under the study's own accession number,
#: else one of its requested orders' (the first by report id), else one linked by patient and date
#: (a DICOM SR report is only linked to a study the exports give none).
_LINK_PREFERENCE = {"accession": 0, "requested_accession": 1, "patient_date": 2, "dicom_sr": 3}


def _study_reports(tables: Mapping[str, pa.Table]) -> dict[str, StudyReport]:
    """Per study id, the report (sections, sentences with anatomies and labels, report labels); the
    reports table keeps every report of a study."""
    sentence_labels: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for row in tables["labels"].to_pylist():
        sentence_labels[(row["report_id"], row["sentence_index"])][row["label"]] = row["state"]
    sentences: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in tables["sentences"].to_pylist():
        sentences[row["report_id"]].append(
            {
                "index": row["sentence_index"],
                "section": row["section"],
                "start": row["char_start"],
                "end": row["char_end"],
                "text": row["text"],
                "anatomies": list(row["anatomies"]),
                "labels": sentence_labels.get((row["report_id"], row["sentence_index"]), {}),
            }
        )
    out: dict[str, StudyReport] = {}
    rows = tables["reports"].to_pylist()
    for row in sorted(rows, key=lambda r: (_LINK_PREFERENCE.get(r["link_method"], len(_LINK_PREFERENCE)), r["report_id"])):
        if row["study_id"] in out:  # several reports for one study (a group case): the sample holds one
            continue
        out[row["study_id"]] = StudyReport(
            report_id=row["report_id"],
            language=row["language"],
            text=row["text"],
            sections=tuple(zip(row["section_names"], row["section_starts"], row["section_ends"])),
            sentences=tuple(sorted(sentences[row["report_id"]], key=lambda s: s["index"])),
            labels=tuple(sorted(sentence_labels.get((row["report_id"], -1), {}).items())),
        )
    return out


def _save_tables(folder: Path, tables: Mapping[str, pa.Table]) -> None:
    for name, table in tables.items():
        write_parquet(table, folder / f"{name}.parquet")


def _load_tables(folder: Path) -> dict[str, pa.Table]:
    return {p.stem: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}


def _recorded_tables(folder: Path) -> dict[str, pa.Table]:
    """The tables of a stored result the run index names; one that is not there (a work store pruned by
    hand or copied in part) stops the build naming it, where it failed with a KeyError or, a study's own
    result missing, built a version without its rows that verify passed."""
    if not folder.is_dir():
        raise CtCorpusError("a stored result the last ingest run recorded is missing (the work store was pruned "
                            "or copied in part); run `ctcorpus ingest` again: it recomputes what is missing", path=folder)
    return _load_tables(folder)


def _as_is(text: str) -> str:
    """No redaction: for rows made of pseudonyms and messages of the pipeline's own (a failed study, a segmentation)."""
    return text


def _quarantine_table(entries: Sequence[QuarantineEntry], source: str | Mapping[str, str] = "",
                      redact: Callable[[str], str] = _as_is) -> pa.Table:
    """``source`` is the ``source_sha256`` of every row, or, where the rows name several sources (an
    export's files, the report exports), that of the ``path`` each row names ('' where none is known:
    a file that is no DICOM, a study without a report); ``redact`` rewrites each path and message."""
    rows = [{**asdict(e), "path": redact(e.path), "message": redact(e.message),
             "source_sha256": source if isinstance(source, str) else source.get(e.path, "")} for e in entries]
    return table_from_rows("quarantine", rows, pipeline_version=__version__, producer=PIPELINE_PRODUCER)


def _save_quarantine(folder: Path, entries: Sequence[QuarantineEntry], redact: Callable[[str], str],
                     source: str | Mapping[str, str] = "") -> None:
    """Store a stage's quarantine: the corpus's table, whose paths and messages name the export's
    files and series with their identifiers pseudonymized and names and dates redacted (``redact``,
    a :class:`~ctcorpus.ingest.tables.Redactor` of the records concerned), and beside it
    :data:`PRIVATE_QUARANTINE`, the same rows with the real path and message and the ``corpus_path``
    the table gives: operators find the file by it, and it never leaves the work store."""
    table = _quarantine_table(entries, source, redact)
    write_parquet(table, folder / "quarantine.parquet")
    private = _quarantine_table(entries, source).to_pylist()
    (folder / PRIVATE_QUARANTINE).write_text(
        "".join(json.dumps(row | {"corpus_path": path}, sort_keys=True, ensure_ascii=False) + "\n"
                for row, path in zip(private, table["path"].to_pylist(), strict=True)), encoding="utf-8")


def _stack_source(stack: Stack) -> str:
    """The ``source_sha256`` of what is made of a stack (its series row, volume and decisions): of its files."""
    return sha256_of_hashes(r.sha256 for r in stack.instances + stack.duplicates)


def _analysis_keys_name(settings: str) -> str:
    """The file beside a stored reports result that says which analysis inputs each report's rows
    came from (a work-store file, not a table: it never reaches a corpus), named by the result's
    :func:`~ctcorpus.reports.analysis_settings`."""
    return f"analysis_keys.{settings[:16]}.json"


def _latest_reports(store: WorkStore, settings: str) -> ReportsResult | None:
    """The reports result stored last under the same rules and reports config (``settings``),
    whose analyses a run over a changed export reuses: None if there is none, or it no longer
    reads (stored by a version with other tables). A result under other settings is never loaded,
    and a site that switches its config back finds the result of its earlier run."""
    stored = sorted(store.root.glob(f"reports/*/*/{_analysis_keys_name(settings)}"),
                    key=lambda path: path.stat().st_mtime)
    if not stored:
        return None
    try:
        tables = _load_tables(stored[-1].parent)
        return ReportsResult(tuple(rows_from_table(ReportRow, tables["reports"])),
                             tuple(rows_from_table(SentenceRow, tables["sentences"])),
                             tuple(rows_from_table(LabelRow, tables["labels"])), (),
                             json.loads(stored[-1].read_text(encoding="utf-8")))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        log.warning("reports: the previous result in %s is not reused (%s)", stored[-1].parent, exc)
        return None


def _report_export_hash(path: Path) -> str:
    """A report export's sha256, or why it cannot be read: the reports stage quarantines an export
    it cannot read (``unreadable_report``, naming it) and reads the others, so hashing it for the
    key must not stop the run first; once it reads, its hash re-does the reports."""
    try:
        return sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def _reports_left_out(
    reports: pa.Table, study_ids: Collection[str], reason: QuarantineReason, why: str
) -> tuple[list[QuarantineEntry], dict[str, str]]:
    """A quarantine row for each report linked to a study that is left out of the corpus (``why``
    says why; the build keeps the reports of its studies only, so they would leave unnamed), and
    the ``source_sha256`` of the export each row names."""
    rows = [row for row in reports.to_pylist() if row["study_id"] in study_ids]
    entries = [QuarantineEntry("reports", row["source_path"], reason,
                               f"{row['source_path']}: report {row['report_id']} links to study {row['study_id']}, {why}",
                               item_id=row["report_id"]) for row in rows]
    return entries, {row["source_path"]: row["source_sha256"] for row in rows}


def export_root(run: RunConfig) -> Path:
    """The run's export folder, or an :class:`IngestError` naming the setting: unset, or no folder (a
    mistyped path). ``ctcorpus ingest`` checks it before it starts Prefect, so the error is one line."""
    if run.export_dir is None:
        raise IngestError("no export folder: set run.export_dir or name it (`ctcorpus ingest EXPORT`, the flow's export_dir)", path="run.export_dir")
    if not Path(run.export_dir).is_dir():
        raise IngestError("export root is not a folder (run.export_dir, or `ctcorpus ingest EXPORT`)", path=run.export_dir)
    return Path(run.export_dir)


#: Each export file's sha256 by its stamp (:mod:`ctcorpus.ingest.filecache`): a re-run hashes only the files
#: that changed. Not a stage result: a run rewrites it where the export changed.
DISCOVERY_CACHE = "discovery-cache.json"


def plan_export(config: CorpusConfig, work_dir: Path) -> ExportPlan:
    """Index the export, plan stacks, process and link the reports; one unit per study.

    Export-level results (the ``instances`` table, the quarantine of discovery and of the
    reports) are stored under a key of the export's file paths and hashes, the ingest code and
    the config: the rows name each file by its path.
    """
    run = config.run
    root = export_root(run)
    _segmenter(config, planning=True)  # before any work: a TotalSegmentator without its weights fails the run here
    store = WorkStore(Path(work_dir))
    store.clean()
    p = pseudonymizer_for(config.ingest)
    handler = QuarantineLog()
    exclude = list(run.report_files) + [m for pattern in run.exclude_globs for m in root.glob(pattern)]
    index = index_export(root, config.ingest, on_error=handler, exclude=exclude,
                         cache=DiscoveryCache(store.root / DISCOVERY_CACHE, p.key))
    stacks = plan_stacks(index, config.ingest)
    candidates = {group[0].stack_key: tuple(s.stack_key for s in group) for group in candidate_groups(stacks, config.ingest)}
    studies = _study_keys(stacks)
    # no PatientID (DICOM allows an empty one): its patient's other studies could land in another split
    unidentified = {s.study_uid for s in studies if not s.patient_id.strip()}
    left_out = {p.study(uid) for uid in unidentified}

    # by path too: the rows name their export by its path (reports.source_path, the quarantine), which a move changes
    report_exports = [(str(f), _report_export_hash(Path(f))) for f in run.report_files]
    sr_records = sorted((r for r in index.instances if r.sop_class_uid in SR_STORAGE), key=lambda r: r.rel_path)
    sr_documents = [(r.path, safe_path(r.rel_path, r, p)) for r in sr_records]  # recorded under the safe path
    sr_studies = {r.study_uid for r in sr_records}
    sr_image_numbers = {r.slice_id: (r.series_number, r.instance_number) for r in index.instances
                        if r.study_uid in sr_studies and r.series_number is not None and r.instance_number is not None}
    names = _header_names(stacks)
    # the export's and the reports' quarantine rows name files with no readable header and report rows: every
    # identifier, name and date of the export's headers is redacted wherever it stands; the automaton is built
    # once, and only where one of them is stored anew (a re-run of an unchanged export builds none)
    export_redactor = functools.cache(lambda: Redactor(index.instances, p))
    schemas = _schema_versions("reports", "sentences", "labels", "quarantine")
    reports_key = _digest("reports", __version__, REPORTS_PRODUCER, schemas, report_exports,
                          [(name, r.sha256) for (_, name), r in zip(sr_documents, sr_records, strict=True)],
                          sorted(sr_image_numbers.items()),
                          [asdict(s) for s in studies], names, _section(config, "reports"), p.key_id)
    if not store.has("reports", reports_key):
        log_r = QuarantineLog()
        settings = analysis_settings(config.reports)
        result = process_reports(run.report_files, studies, config=config.reports, pseudonymize=p.make,
                                 header_names=names, on_error=log_r, sr_documents=sr_documents,
                                 sr_image_numbers=sr_image_numbers, previous=_latest_reports(store, settings))
        with store.writing("reports", reports_key) as folder:
            _save_tables(folder, reports_tables(result))
            # a study without PatientID has its missing_patient_id row, whether or not a report links to it
            rows = [e for e in result.quarantine if e.reason is not QuarantineReason.NO_REPORT or e.item_id not in left_out]
            _save_quarantine(folder, list(log_r.entries) + rows, export_redactor(), {str(Path(f)): h for f, h in report_exports})
            (folder / _analysis_keys_name(settings)).write_text(json.dumps(result.analysis_keys, sort_keys=True),
                                                                encoding="utf-8")
    reports = _load_tables(store.path("reports", reports_key))
    by_study = _study_reports(reports)

    grouped: dict[str, list[Stack]] = defaultdict(list)
    for stack in stacks:
        grouped[stack.first.study_uid].append(stack)
    anonymous = []
    for uid in sorted(unidentified):
        path = grouped[uid][0].first.rel_path
        anonymous.append(QuarantineEntry("ingest", path, QuarantineReason.MISSING_PATIENT_ID,
                                         f"{path}: the study has no PatientID, so no patient-level split can keep it "
                                         "with its patient's other studies; export it with its patient id",
                                         item_id=p.study(uid)))
    orphaned, orphaned_sources = _reports_left_out(
        reports["reports"], left_out, QuarantineReason.MISSING_PATIENT_ID,
        "which has no PatientID: both are left out (the study's row names a file of it); export the study with its patient id")
    anonymous.extend(orphaned)
    seen = {e.path for e in index.quarantine}
    entries = [*index.quarantine, *(e for e in handler.entries if e.path not in seen or e.stage != "ingest"), *anonymous]
    export_key = _digest("export", __version__, INGEST_PRODUCER, _schema_versions("instances", "quarantine"), sorted((r.rel_path, r.sha256) for r in index.instances),
                         [(e.path, e.message) for e in entries], _pseudonymizing(config, p))
    if not store.has("export", export_key):
        with store.writing("export", export_key) as folder:
            instances = table_from_rows("instances", instance_rows(index, p))
            files = {r.rel_path: r.sha256 for r in index.instances} | orphaned_sources
            _save_tables(folder, {"instances": instances})
            _save_quarantine(folder, entries, export_redactor(), files)

    units = []
    for study_uid in sorted(grouped.keys() - unidentified):
        group = grouped[study_uid]
        study_id = p.study(study_uid)
        units.append(
            StudyUnit(
                unit_id=study_id,
                patient_id=p.patient(group[0].first.patient_id),
                stacks=tuple(group),
                candidates=tuple(candidates[s.stack_key] for s in group if s.stack_key in candidates),
                report=by_study.get(study_id),
                reports_key=reports_key,
            )
        )
    log.info("planned export files=%d stacks=%d studies=%d", len(index.instances), len(stacks), len(units))
    return ExportPlan(
        units=tuple(units), export_key=export_key, reports_key=reports_key, quarantine=tuple(entries),
        n_files=len(index.instances), config=config.recorded(), reports_quarantined=reports["quarantine"].num_rows,
    )




# ------------------------------------------------------------------------------ one study's work

#: One long-lived segmenter per worker process and anatomy config (models load once, not per volume).
_SEGMENTERS: dict[str, Any] = {}


def _segmenter(config: CorpusConfig, *, planning: bool = False) -> Any:
    """This process's segmenter for the anatomy config. Only planning warns that ``backend: auto``
    fell back to the threshold segmenter: each worker process builds its own, and repeated it."""
    key = _digest(_section(config, "anatomy"))
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = make_segmenter(config.anatomy, warn=planning)
    return _SEGMENTERS[key]


def _volume_geometry(folder: Path) -> dict[str, Any]:
    """The stored volume's geometry, hashes and fingerprint (``volume.json``), without its pixels."""
    return json.loads((folder / "volume.json").read_text())


def _fingerprint(folder: Path, geometry: Mapping[str, Any]) -> list[float]:
    """The volume's fingerprint of this version: the one stored at ingest, or recomputed from the
    stored array when the ingest result is older (its key has no fingerprint version, since
    re-ingesting would re-segment every volume too)."""
    if geometry.get("fingerprint_version") == FINGERPRINT_VERSION:
        return geometry["fingerprint"]
    hu = decode_array((folder / "hu.npy.zst").read_bytes())
    return [float(v) for v in volume_fingerprint(hu, tuple(geometry["spacing_xyz"][::-1]))]


def _volume_image(folder: Path) -> tuple[Any, dict[str, Any]]:
    import SimpleITK as sitk

    geometry = _volume_geometry(folder)
    image = sitk.GetImageFromArray(decode_array((folder / "hu.npy.zst").read_bytes()))
    image.SetSpacing(geometry["spacing_xyz"])
    image.SetOrigin(geometry["origin_xyz"])
    image.SetDirection(geometry["direction"])
    return image, geometry


#: Runs that try a stage whose work failed before its result without it is kept: a volume's segmentation
#: (out of memory, a GPU error), a stack's assembly, resampling, rows or stored volume, a volume's snippets
#: and sentence regions (out of memory, an error no check foresaw). A passing failure is retried; one that
#: always fails costs at most this many runs of the stage.
STAGE_ATTEMPTS = 3
#: Beside a stored ingest result whose stack failed to make a volume (:func:`stage_failed_entry`): how many runs it failed in.
ASSEMBLY_FAILURES = "assembly.json"
#: Beside a stored text result whose snippets and sentence regions failed: how many runs they failed in.
MINING_FAILURES = "mining.json"


def _failed_attempts(path: Path) -> int:
    """How many runs failed the work of the stored result whose outcome file is ``path`` (0: it did not fail, or none is stored)."""
    return int(json.loads(path.read_text()).get("failed_attempts", 0)) if path.is_file() else 0


def _again(failed: int, retried: str) -> str:
    """What becomes of a result whose work failed in ``failed`` runs: ``retried`` by the next one, or kept."""
    return f"the next run {retried} again" if failed < STAGE_ATTEMPTS else f"failed in {failed} runs, kept so"


def _failed_again(path: Path, failed_before: int) -> int:
    """Record at ``path`` (see :func:`_failed_attempts`) that one more run failed the work; return how many did."""
    failed = failed_before + 1
    path.write_text(json.dumps({"failed_attempts": failed}))
    return failed


def _stored_volume(volume: ResampledVolume, volume_id: str, source: str) -> tuple[dict[str, Any], bytes]:
    """An ingested volume as its result stores it: its geometry, hashes and fingerprint (``volume.json``), and its array."""
    hu = volume.array
    spacing_zyx = (volume.spacing[2], volume.spacing[1], volume.spacing[0])
    geometry = {
        "volume_id": volume_id,
        "spacing_xyz": list(volume.spacing),
        "origin_xyz": list(volume.origin),
        "direction": list(volume.direction),
        "orientation": volume.orientation,
        "hu_clip": list(volume.hu_clip),
        "shape_zyx": list(hu.shape),
        "hu_sha256": hashlib.sha256(np.ascontiguousarray(hu).tobytes()).hexdigest(),
        "fingerprint": [float(v) for v in volume_fingerprint(hu, spacing_zyx)],
        "fingerprint_version": FINGERPRINT_VERSION,
        "source_sha256": source,
    }
    return geometry, encode_array(hu)


def _run_ingest(stack: Stack, config: CorpusConfig, p: Pseudonymizer, folder: Path, failed_before: int = 0) -> None:
    """A stack whose volume fails to be stored (its fingerprint or encoding out of memory) is quarantined
    like one that failed to assemble: where its study failed after retries, losing its other volumes."""
    result = ingest_stack(stack, config.ingest, p)
    source = _stack_source(stack)
    stored = None
    if result.volume is not None:
        try:
            stored = _stored_volume(result.volume, result.volume_id, source)
        except Exception as error:  # noqa: BLE001 - the stack's failure, not its study's
            failure = stage_failed_entry(stack, result.volume_id, "storing the volume", error)
            result = without_volume(stack, result.volume_id, [*result.quarantine, failure], p)
    tables = {"series": table_from_rows("series", [result.series_row])}
    entries = list(result.quarantine)
    if result.volume is None and any(e.reason is QuarantineReason.STAGE_FAILED for e in entries):
        failed = _failed_again(folder / ASSEMBLY_FAILURES, failed_before)
        entries = [replace(e, message=f"{e.message} ({_again(failed, 'assembles it')})")
                   if e.reason is QuarantineReason.STAGE_FAILED else e for e in entries]
    _save_quarantine(folder, entries, Redactor(stack.instances + stack.duplicates, p), source)
    if stored is not None and result.volume_row is not None:
        geometry, hu = stored
        tables["volumes"] = table_from_rows("volumes", [result.volume_row])
        tables["slices"] = table_from_rows("slices", result.slice_rows)
        (folder / "hu.npy.zst").write_bytes(hu)
        (folder / "volume.json").write_text(json.dumps(geometry, sort_keys=True))
    _save_tables(folder, tables)


def _run_anatomy(volume_id: str, ingest_dir: Path, config: CorpusConfig, folder: Path, failed_before: int = 0) -> None:
    image, geometry = _volume_image(ingest_dir)
    entries: list[QuarantineEntry] = []
    failed = 0
    try:
        segmentation = segment_volume(image, config.anatomy, _segmenter(config))
        mask = segmentation.array()
        stats = structure_stats(segmentation, image, volume_id)
        source, table = segmentation.source, dict(segmentation.label_table)
    except Exception as error:  # noqa: BLE001 - the mask's (its stats' too: out of memory), not its study's
        failed = failed_before + 1
        why = error if isinstance(error, CtCorpusError) else f"{type(error).__name__}: {error}"
        entries.append(
            QuarantineEntry(
                "anatomy", "", QuarantineReason.SEGMENTATION_FAILED,
                f"volume {volume_id}: {why}; stored without a mask ({_again(failed, 'segments it')})",
                item_id=volume_id, action=Action.ACCEPT,
            )
        )
        mask, stats, source, table = np.zeros(geometry["shape_zyx"], np.uint8), [], "none", {}
    (folder / "mask.npy.zst").write_bytes(encode_array(mask.astype(np.uint8)))
    outcome = {"mask_source": source, "label_table": {str(k): v for k, v in table.items()}}
    (folder / "mask.json").write_text(json.dumps(outcome | ({"failed_attempts": failed} if failed else {}), sort_keys=True))
    _save_tables(folder, {"anatomy_stats": anatomy_stats_table(stats, geometry["source_sha256"])})
    _save_quarantine(folder, entries, _as_is, geometry["source_sha256"])


def _series_slices(unit: StudyUnit, p: Pseudonymizer) -> list[SeriesSlices]:
    tables = (stack_slices(stack, series_uid=p.series(stack.first.series_uid),
                           frame_of_reference_uid=p.frame_of_reference(stack.first.frame_of_reference_uid))
              for stack in unit.stacks)
    return [table for table in tables if table is not None]


#: Words of the names a de-identification tool or a modality writes in place of a patient's
#: ("ANONYMOUS", "Anonymized^Patient", "NO^NAME", "UNBEKANNT"): a name of these words alone names no one.
_PLACEHOLDER_NAME_WORDS = frozenset({
    "ANON", "ANONYM", "ANONYME", "ANONYMER", "ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANONYMISIERT", "DEIDENTIFIED",
    "DEID", "REDACTED", "REMOVED", "UNKNOWN", "UNBEKANNT", "NONE", "NULL", "NA", "NO", "NAME", "NONAME", "PATIENT",
    "PATIENTIN", "TEST", "PHANTOM", "DE", "IDENTIFIED",
})


def _placeholder_name(name: str) -> bool:
    """Whether ``name`` (upper case, words one space apart) names no one: no word, only
    :data:`_PLACEHOLDER_NAME_WORDS`, or only X's ("XXXX")."""
    words = re.sub(r"[^\w ]", " ", name).split()  # "ANON-0001": "0001" is no placeholder word
    return all(w in _PLACEHOLDER_NAME_WORDS or set(w) == {"X"} for w in words)


def _real_birth_date(value: str) -> bool:
    """Whether ``value`` (YYYYMMDD) is a day someone alive was born on: not "00000000" or 1900-01-01,
    the placeholders exports write for an unknown or removed birth date."""
    try:
        return datetime.strptime(value, "%Y%m%d").year > 1900
    except ValueError:
        return False


def person_key(stack: Stack, p: Pseudonymizer) -> str:
    """Keyed hash of the normalized patient name and birth date: finds one person under two patient ids.

    The name is its first written component group: one export writes "Yamada^Tarou", another adds the
    ideographic and phonetic groups ("Yamada^Tarou=山田^太郎=やまだ^たろう"), and both are one person.
    '' when either is missing or a placeholder ("ANONYMOUS", a birth date 19000101): no key is better
    than a key that joins strangers, and a de-identified export's placeholder name and the birth dates
    it kept made everyone born on one day one person (a false leak across splits for the audit).
    """
    first = stack.first
    group = next((g for g in first.patient_name.split("=") if g.strip("^ ")), "")
    name = " ".join(group.upper().replace("^", " ").split())
    if _placeholder_name(name) or not _real_birth_date(first.patient_birth_date):
        return ""
    return p.make("per", f"{name}|{first.patient_birth_date}")


def _section_texts(report: StudyReport) -> dict[str, str]:
    """Each section name's text: sections of one name joined by a blank line in report order (a report
    with a findings section per region, "FINDINGS: chest ... FINDINGS: abdomen ...", kept the last)."""
    parts: dict[str, list[str]] = {}
    for name, start, end in report.sections:
        parts.setdefault(name, []).append(report.text[start:end])
    return {name: texts[0] if len(texts) == 1 else "\n\n".join(t.strip() for t in texts) for name, texts in parts.items()}


def _report_json(report: StudyReport | None) -> dict[str, Any]:
    if report is None:
        return {"report_id": "", "language": "", "text": "", "sections": {}, "sentences": [], "labels": {label: "absent" for label in CT_RATE_LABELS}}
    labels = {label: "absent" for label in CT_RATE_LABELS} | dict(report.labels)
    return {
        "report_id": report.report_id,
        "language": report.language,
        "text": report.text,
        "sections": _section_texts(report),
        "sentences": list(report.sentences),
        "labels": labels,
    }


def _bare_image_series(unit: StudyUnit, stack: Stack) -> int | None:
    """The series a reference without one ("image 45") points at, unless snippets.primary_series_number
    says: the volume's own when it is the study's one volume; among several ("volumes_per_study: all")
    none, so that the references are quarantined as ambiguous_series where the study has several
    axial series (each volume had mined image 45 of its own series: all but one pair was wrong)."""
    return stack.first.series_number if len(unit.candidates) == 1 else None


def _text_source(volume_source: str, report_source: str | None = None) -> str:
    """The ``source_sha256`` of a volume's text results (snippets, sentence regions, its samples row,
    their quarantine): of the volume's files and its report's export, if any. The text stage stores
    them with the volume's alone and the build joins the export's in (:func:`_with_report_source`),
    from the run's reports table: the stage's key has no export hash (see :func:`_text_key`)."""
    return sha256_of_hashes([volume_source] + ([report_source] if report_source is not None else []))


def _with_report_source(tables: Mapping[str, pa.Table], ingest_dir: Path, report_source: str) -> dict[str, pa.Table]:
    """A stored text result of a volume with a report, its rows' ``source_sha256`` naming the report's export too."""
    source = _text_source(_volume_geometry(ingest_dir)["source_sha256"], report_source)
    out = {}
    for name, table in tables.items():
        column = table.schema.get_field_index("source_sha256")
        out[name] = table.set_column(column, table.schema.field(column), pa.array([source] * table.num_rows, pa.string()))
    return out


def _mined(unit: StudyUnit, report: StudyReport, stack: Stack, volume_id: str, geometry: Mapping[str, Any],
           stats: Sequence[StructureStats], config: CorpusConfig, p: Pseudonymizer) -> tuple[list[Any], list[QuarantineEntry], list[Any]]:
    """A volume's snippets, their quarantine rows and its report's sentence regions."""
    grid = VolumeGrid(
        volume_id=volume_id,
        frame_of_reference_uid=p.frame_of_reference(stack.first.frame_of_reference_uid),
        origin_mm=tuple(geometry["origin_xyz"]),
        spacing_mm=tuple(geometry["spacing_xyz"]),
        direction=tuple(geometry["direction"]),
        shape_zyx=tuple(geometry["shape_zyx"]),
    )
    contexts = [
        SentenceContext(s["start"], s["end"], tuple(s["anatomies"]), tuple(sorted(l for l, v in s["labels"].items() if v == "positive")))
        for s in report.sentences
    ]
    pairs, entries = mine_snippets(
        report.report_id, report.text, _series_slices(unit, p), grid, config.snippets, sentences=contexts,
        language=report.language or None, source=report.report_id, primary_series_number=_bare_image_series(unit, stack),
        primary_series_uid=p.series(stack.first.series_uid),
    )
    regions = [sentence_region(s["anatomies"], stats, sentence_id=f"{report.report_id}:{s['index']}") for s in report.sentences]
    return pairs, entries, [region for region in regions if region is not None]


def _run_text(unit: StudyUnit, stack: Stack, keys: VolumeKeys, store: WorkStore, config: CorpusConfig, p: Pseudonymizer,
              folder: Path, failed_before: int = 0) -> None:
    """A volume whose snippets or sentence regions fail (a singular direction matrix, out of memory, an error
    no check foresaw) is stored without them, naming the error, and mined again by the next runs
    (:data:`STAGE_ATTEMPTS`): its study failed after retries, losing its other volumes and report."""
    geometry = _volume_geometry(store.path("ingest", keys.ingest))
    fingerprint = _fingerprint(store.path("ingest", keys.ingest), geometry)
    mask_info = json.loads((store.path("anatomy", keys.anatomy) / "mask.json").read_text())
    stats_table = pq.read_table(store.path("anatomy", keys.anatomy) / "anatomy_stats.parquet")
    stats = [StructureStats(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in row.items() if k in StructureStats.__slots__}) for row in stats_table.to_pylist()]
    report = unit.report
    pairs, entries, regions = [], [], []
    if report is not None:
        try:
            pairs, entries, regions = _mined(unit, report, stack, keys.volume_id, geometry, stats, config, p)
        except Exception as error:  # noqa: BLE001 - the volume's snippets, not its study
            failed = _failed_again(folder / MINING_FAILURES, failed_before)
            entries = [QuarantineEntry(
                "snippets", "", QuarantineReason.STAGE_FAILED,
                f"volume {keys.volume_id}: mining report {report.report_id} failed ({type(error).__name__}: {error}); "
                f"stored without snippets and sentence regions ({_again(failed, 'mines it')})",
                item_id=keys.volume_id, action=Action.ACCEPT,
            )]
    source = _text_source(geometry["source_sha256"])  # the build joins in the report's export
    snippets = [
        {"snippet_id": q.snippet_id, "sentence_index": q.sentence_index, "text": q.snippet_text, "reference": q.reference_text,
         "series_number": q.series_number, "image_number": q.image_number, "z_mm": q.z_mm, "slice_index": q.slice_index,
         "bin_index": q.bin_index, "bin_mm": q.bin_mm, "anatomies": list(q.anatomies), "labels": list(q.labels)}
        for q in pairs
    ]
    meta = {
        "volume_id": keys.volume_id, "patient_id": unit.patient_id, "study_id": unit.unit_id,
        "spacing_zyx": geometry["spacing_xyz"][::-1], "origin_xyz": geometry["origin_xyz"], "direction": geometry["direction"],
        "orientation": geometry["orientation"], "shape_zyx": geometry["shape_zyx"], "hu_clip": geometry["hu_clip"],
        "mask_source": mask_info["mask_source"], "label_table": mask_info["label_table"], "pipeline_version": __version__,
    }
    sample_row = {
        "volume_id": keys.volume_id, "study_id": unit.unit_id, "patient_id": unit.patient_id,
        "report_id": report.report_id if report else "", "in_shards": report is not None,
        "hu_sha256": geometry["hu_sha256"], "fingerprint": fingerprint,
        "fingerprint_version": FINGERPRINT_VERSION, "shape_zyx": geometry["shape_zyx"],
        "mask_source": mask_info["mask_source"], "n_snippets": len(pairs), "patient_key": person_key(stack, p),
        "source_sha256": source, "producer": PIPELINE_PRODUCER,
    }
    (folder / "report.json").write_bytes(json.dumps(_report_json(report), sort_keys=True, ensure_ascii=False).encode())
    (folder / "snippets.json").write_bytes(json.dumps(snippets, sort_keys=True, ensure_ascii=False).encode())
    (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    _save_tables(
        folder,
        {
            "snippets": snippets_table(pairs, source),
            "sentence_regions": sentence_regions_table(regions, source),
            "samples": table_from_rows("samples", [sample_row], pipeline_version=__version__),
        },
    )
    _save_quarantine(folder, entries, Redactor(stack.instances, p), source)  # rows quote the report: its headers redacted too


def _save_study(folder: Path, unit: StudyUnit, assembled: Sequence[str], rejected: Sequence[str], p: Pseudonymizer) -> None:
    """Store the series rows and decisions of the study's stacks that no ingest result holds (all but
    those ``assembled`` into volumes or ``rejected`` at assembly), and which stacks stand in for rejected ones."""
    stacks = {s.stack_key: s for s in unit.stacks}
    rows, entries = [], []
    for stack in unit.stacks:
        if stack.stack_key in assembled or stack.stack_key in rejected:
            continue
        rows.append(series_row(stack, p, accepted=not stack.rejected))
        entries.extend(finding_entry(stack, item, p.volume(stack.stack_key)) for item in stack.findings)
    entries += unselected_entries(unit.stacks, [stacks[key] for key in (*assembled, *rejected)], p)
    for group in unit.candidates:
        volume = next((key for key in group if key in assembled), group[0])
        if volume != group[0]:  # the candidates before it were rejected at assembly
            entries.append(fallback_entry(stacks[volume], [stacks[key] for key in group[: group.index(volume)]], p))
    files = {r.rel_path: _stack_source(s) for s in unit.stacks for r in s.instances + s.duplicates}
    _save_tables(folder, {"series": table_from_rows("series", rows)})
    _save_quarantine(folder, entries, Redactor((r for s in unit.stacks for r in s.instances + s.duplicates), p), files)


def _unit_folders(store: WorkStore, study_key: str, rejected: Sequence[str], volumes: Sequence[VolumeKeys]) -> list[Path]:
    """The stored results of a study: its study tables, its stacks rejected at assembly, its volumes' stages."""
    return [store.path("study", study_key), *(store.path("ingest", key) for key in rejected),
            *(store.path(stage, getattr(v, stage)) for v in volumes for stage in ("ingest", "anatomy", "text"))]


def _quarantine_rows(folder: Path) -> int:
    """Rows of a stored result's quarantine table (from its footer, without reading it)."""
    path = folder / "quarantine.parquet"
    return pq.read_metadata(path).num_rows if path.is_file() else 0


class _NotStored(Exception):
    """A stored-only pass (see failed_outcome) met a stage result the work store does not hold."""


def _cached_or_run(store: WorkStore, stage: str, key: str, run: Callable[[Path, int], None], computed: list[str],
                   cached: list[str], compute: bool, *, failures: str = "") -> None:
    """Reuse the stored result of ``stage`` under ``key``, or run it. ``failures`` names the file beside the
    result that counts the runs its work failed in (:func:`_failed_attempts`): one that failed in fewer than
    :data:`STAGE_ATTEMPTS` runs is run again (replaced when the new one is complete); ``run`` gets that count."""
    failed = _failed_attempts(store.path(stage, key) / failures) if failures else 0
    if store.has(stage, key) and not (0 < failed < STAGE_ATTEMPTS and compute):
        cached.append(stage)
        return
    if not compute:
        raise _NotStored(f"{stage} {key[:12]}")
    with store.writing(stage, key) as folder:
        run(folder, failed)
    computed.append(stage)


def process_unit(unit: StudyUnit, config: CorpusConfig, work_dir: Path, *, compute: bool = True) -> UnitOutcome:
    """Ingest, segment and mine one study, reusing every stage result already in the store.

    A selected stack that assembly rejects is replaced by the next of its candidates that
    assembles (``StudyUnit.candidates``); a stored rejection is reused, so a re-run chooses alike,
    but for a stack whose assembly, resampling, rows or stored volume failed (out of memory, an error no
    check foresaw): the next runs try it again (:data:`STAGE_ATTEMPTS`), as they do a volume's failed
    segmentation or snippets. A study whose stacks are all rejected still records its series rows and
    quarantine. Errors of the library (:class:`~ctcorpus.errors.CtCorpusError`) and any failure of a
    stack's volume, mask or snippets are recorded; anything else propagates so the flow can retry it.
    ``compute=False`` only reads stored results (see failed_outcome).
    """
    store = WorkStore(Path(work_dir))
    p = pseudonymizer_for(config.ingest)
    computed: list[str] = []
    cached: list[str] = []
    stacks = {s.stack_key: s for s in unit.stacks}
    assembled: list[tuple[Stack, str]] = []
    rejected: list[tuple[Stack, str]] = []  # rejected at assembly: their series rows and reasons are stored
    for group in unit.candidates:
        for stack in (stacks[key] for key in group):
            ingest_key = _ingest_key(stack, config, p)
            _cached_or_run(store, "ingest", ingest_key, lambda f, failed: _run_ingest(stack, config, p, f, failed), computed,
                           cached, compute, failures=ASSEMBLY_FAILURES)
            if (store.path("ingest", ingest_key) / "volume.json").is_file():
                assembled.append((stack, ingest_key))
                break
            rejected.append((stack, ingest_key))
    volumes = []
    for stack, ingest_key in assembled:
        volume_id = p.volume(stack.stack_key)
        anatomy_key = _anatomy_key(ingest_key, config)
        _cached_or_run(
            store, "anatomy", anatomy_key,
            lambda f, failed: _run_anatomy(volume_id, store.path("ingest", ingest_key), config, f, failed), computed, cached,
            compute, failures="mask.json",
        )
        text_key = _text_key(ingest_key, anatomy_key, (store.path("anatomy", anatomy_key) / "mask.json").read_text(),
                             unit, config)
        keys = VolumeKeys(volume_id, ingest_key, anatomy_key, text_key)
        _cached_or_run(store, "text", keys.text, lambda f, failed: _run_text(unit, stack, keys, store, config, p, f, failed), computed,
                       cached, compute, failures=MINING_FAILURES)
        volumes.append(keys)
    outcome = ([s.stack_key for s, _ in assembled], [s.stack_key for s, _ in rejected])  # what the study tables depend on
    # the stacks' files (paths and hashes) and the ingest code that makes their rows: a series re-sent with corrected
    # headers keeps its UIDs, so its stack key, but its row and quarantine are made anew
    files = [(s.stack_key, s.rejected, sorted((r.rel_path, r.sha256) for r in s.instances + s.duplicates)) for s in unit.stacks]
    study_key = _digest("study", __version__, INGEST_PRODUCER, _schema_versions("series", "quarantine"), files,
                        unit.candidates, outcome, _pseudonymizing(config, p))
    _cached_or_run(store, "study", study_key, lambda f, _: _save_study(f, unit, *outcome, p), computed, cached, compute)
    folders = _unit_folders(store, study_key, [key for _, key in rejected], volumes)
    return UnitOutcome(unit.unit_id, unit.patient_id, study_key, tuple(volumes), tuple(computed), tuple(cached),
                       quarantined=sum(_quarantine_rows(folder) for folder in folders), rejected=tuple(key for _, key in rejected))


def failed_outcome(unit: StudyUnit, error: str, config: CorpusConfig, work_dir: Path) -> UnitOutcome:
    """The outcome of a study that kept failing. Workers fail studies whose results an earlier run
    stored complete (a variable missing on them, a worker killed): those results stand, so the
    next build keeps the study instead of dropping it. Otherwise it is recorded failed (in the
    quarantine) and the run goes on."""
    try:
        stored = process_unit(unit, config, work_dir, compute=False)
    except Exception as exc:  # noqa: BLE001 - not stored, or unreadable: the study failed
        log.error("study failed unit=%s error=%s (no complete stored results: %s)", unit.unit_id, error, exc)
        return UnitOutcome(unit.unit_id, unit.patient_id, "", (), failed=error or "failed")
    log.warning("study failed unit=%s error=%s; the results an earlier run stored stand", unit.unit_id, error)
    return stored


# ------------------------------------------------------------------------------------ run + build


def record_run(plan: ExportPlan, outcomes: Sequence[UnitOutcome], work_dir: Path, started: float | None = None) -> RunSummary:
    """Write the run index (which stored results make up the current export), gather the private
    quarantine rows of its results into ``<work_dir>/quarantine_private.jsonl`` (the real paths, for
    operators; a study that failed has none: its row names no file) and summarize."""
    ordered = sorted(outcomes, key=lambda o: o.unit_id)
    index = {
        "pipeline_version": __version__,
        "export_key": plan.export_key,
        "reports_key": plan.reports_key,
        "units": [asdict(o) for o in ordered],
        "config": plan.config,
    }
    atomic_write_bytes(Path(work_dir) / RUN_INDEX, json.dumps(index, sort_keys=True, indent=1).encode())
    store = WorkStore(Path(work_dir))
    folders = [store.path("export", plan.export_key), store.path("reports", plan.reports_key),
               *(f for o in ordered if not o.failed for f in _unit_folders(store, o.study_key, o.rejected, o.volumes))]
    private = [folder / PRIVATE_QUARANTINE for folder in folders]
    atomic_write_bytes(Path(work_dir) / PRIVATE_QUARANTINE, b"".join(path.read_bytes() for path in private if path.is_file()))
    computed = Counter(s for o in ordered for s in o.computed)
    cached = Counter(s for o in ordered for s in o.cached)
    return RunSummary(
        studies=len(ordered),
        volumes=sum(len(o.volumes) for o in ordered),
        computed=dict(sorted(computed.items())),
        cached=dict(sorted(cached.items())),
        quarantined=len(plan.quarantine) + plan.reports_quarantined + sum(o.quarantined + bool(o.failed) for o in ordered),
        failed=sum(1 for o in ordered if o.failed),
        seconds=0.0 if started is None else time.monotonic() - started,
    )


def _filter(table: pa.Table, column: str, values: Sequence[str]) -> pa.Table:
    return table.filter(pc.is_in(table[column], value_set=pa.array(list(values), pa.string())))


def _run_index(work_dir: Path) -> dict[str, Any]:
    """The index of the last ingest run recorded in ``work_dir`` (see record_run)."""
    try:
        return json.loads((Path(work_dir) / RUN_INDEX).read_text())
    except FileNotFoundError:
        raise CtCorpusError("no ingest run recorded here: run `ctcorpus ingest` first", path=work_dir) from None


#: What :func:`build_units` hands the index's studies to and takes them back from, one at a time as it
#: reads them: a tracker may count them for progress (the build flow's does); ``iter`` counts none.
StudyTracker = Callable[[Sequence[Mapping[str, Any]]], Iterable[Mapping[str, Any]]]


def build_units(work_dir: Path, index: Mapping[str, Any], track: StudyTracker = iter) -> Iterator[BuildUnit]:
    """The stored results the run index (:func:`_run_index`) names, as :class:`~ctcorpus.outputs.BuildUnit`s:
    the export's, then one per study that did not fail, read as they are asked for; ``track`` gets those studies."""
    store = WorkStore(Path(work_dir))
    reports = _recorded_tables(store.path("reports", index["reports_key"]))
    export = _recorded_tables(store.path("export", index["export_key"]))
    failed = [
        QuarantineEntry("pipeline", "", QuarantineReason.STAGE_FAILED, f"study {u['unit_id']} failed after retries: {u['failed']}", item_id=u["unit_id"])
        for u in index["units"] if u["failed"]
    ]
    dropped, sources = _reports_left_out(reports["reports"], {e.item_id for e in failed}, QuarantineReason.STAGE_FAILED,
                                         "which failed after retries: both are left out (the study's row names its "
                                         "error); the next run retries the study")
    yield BuildUnit(
        unit_id="export",
        patient_id="",
        tables={
            "instances": export["instances"],
            "quarantine": pa.concat_tables([export["quarantine"], reports["quarantine"],
                                            _quarantine_table([*failed, *dropped], sources)]),
        },
    )
    for u in track([u for u in index["units"] if not u["failed"]]):
        tables: dict[str, list[pa.Table]] = defaultdict(list)
        for folder in [store.path("study", u["study_key"]), *(store.path("ingest", k) for k in u.get("rejected", ()))]:
            for name, table in _recorded_tables(folder).items():
                tables[name].append(table)
        report_rows = _filter(reports["reports"], "study_id", [u["unit_id"]])
        report_sources = dict(zip(report_rows["report_id"].to_pylist(), report_rows["source_sha256"].to_pylist(), strict=True))
        samples = []
        for v in u["volumes"]:
            folders = {stage: store.path(stage, v[stage]) for stage in ("ingest", "anatomy", "text")}
            stored = {stage: _recorded_tables(folder) for stage, folder in folders.items()}
            sample = stored["text"]["samples"]
            in_shards = sample["in_shards"][0].as_py()  # a volume with a report
            if in_shards:
                stored["text"] = _with_report_source(stored["text"], folders["ingest"], report_sources[sample["report_id"][0].as_py()])
            for stage_tables in stored.values():
                for name, table in stage_tables.items():
                    tables[name].append(table)
            if in_shards:
                samples.append(
                    StoredSample(
                        volume_id=v["volume_id"],
                        files={
                            "hu.npy.zst": folders["ingest"] / "hu.npy.zst",
                            "mask.npy.zst": folders["anatomy"] / "mask.npy.zst",
                            "report.json": folders["text"] / "report.json",
                            "snippets.json": folders["text"] / "snippets.json",
                        },
                        meta=json.loads((folders["text"] / "meta.json").read_text()),
                    )
                )
        report_ids = report_rows["report_id"].to_pylist()
        tables["reports"].append(report_rows)
        tables["sentences"].append(_filter(reports["sentences"], "report_id", report_ids))
        tables["labels"].append(_filter(reports["labels"], "report_id", report_ids))
        merged = {name: pa.concat_tables(parts) for name, parts in tables.items()}
        yield BuildUnit(unit_id=u["unit_id"], patient_id=u["patient_id"], tables=merged, samples=tuple(samples))


def build_from_work(config: CorpusConfig, work_dir: Path, out: Path, track: StudyTracker = iter) -> BuildResult:
    """Build the dataset version of the last recorded ingest run (splits, tables, shards, manifest);
    ``track`` gets the studies to read (:func:`build_units`).

    The data were made under the run's config, which need not be this one (a build run without
    ``-c`` has the defaults): the manifest records the run's, with this config's ``outputs``
    section (the build's own), and states the run's geometry. Other differences are logged.
    """
    build = config.recorded()
    index = _run_index(work_dir)
    run = index.get("config") or build  # a run recorded by an earlier version: no config
    if differing := [name for name in ("ingest", "anatomy", "reports", "snippets") if run[name] != build[name]]:
        log.warning("build: the ingest run used other %s settings than this config; the dataset records the run's",
                    "/".join(differing))
    return build_dataset(build_units(work_dir, index, track), Path(out), config.outputs, run_config=run | {"outputs": build["outputs"]},
                         geometry=manifest_geometry(run["ingest"]))


__all__ = [
    "ExportPlan",
    "RunSummary",
    "StudyReport",
    "StudyTracker",
    "StudyUnit",
    "UnitOutcome",
    "VolumeKeys",
    "build_from_work",
    "build_units",
    "failed_outcome",
    "plan_export",
    "process_unit",
    "record_run",
]
