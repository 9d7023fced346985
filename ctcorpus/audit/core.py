"""The audit's entry point: :func:`audit_corpus` turns :class:`CorpusTables` into an :class:`AuditResult`.

Pure: no file is read or written here (see :func:`~ctcorpus.audit.tables.load_corpus_tables` and
:func:`~ctcorpus.audit.report.write_audit_report` for the shell).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from ctcorpus.audit.diff import CorpusDiff, diff_corpora
from ctcorpus.audit.findings import SEVERITY_ORDER, Finding, FindingKind, Severity
from ctcorpus.audit.leakage import (
    coverage,
    find_leaks,
    fingerprint_findings,
    placeholder_findings,
    placeholder_ids,
)
from ctcorpus.audit.stats import CorpusStats, corpus_statistics, orphan_labels
from ctcorpus.audit.tables import CorpusTables
from ctcorpus.config.audit import AuditConfig
from ctcorpus.enums import Action
from ctcorpus.version import __version__

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditResult:
    """Everything the audit found about one corpus (and, optionally, against another).

    Attributes
    ----------
    name, manifest:
        The audited corpus and its manifest.
    stats:
        Its statistics.
    findings:
        Leaks, duplicates and data-quality problems, most severe first.
    coverage:
        Per corpus and leak check, the rows it could check of all rows
        (:func:`~ctcorpus.audit.leakage.coverage`): no finding of a check says nothing of the rest.
    against:
        Name of the corpus checked against (``None`` when none was given).
    diff:
        What changed from ``against`` to this corpus (``None`` without ``against``).
    config:
        The thresholds used (recorded in the report so the numbers can be reproduced).
    pipeline_version:
        The ctcorpus version that ran the audit.
    """

    name: str
    manifest: Mapping[str, Any]
    stats: CorpusStats
    findings: tuple[Finding, ...]
    coverage: pd.DataFrame
    against: str | None
    diff: CorpusDiff | None
    config: AuditConfig
    pipeline_version: str

    def count(self, severity: Severity | str) -> int:
        """How many findings have ``severity``."""
        return sum(f.severity == Severity(severity) for f in self.findings)


def _tagged(frame: pd.DataFrame, corpus: str) -> pd.DataFrame:
    return frame.assign(corpus=corpus)


def _label_findings(prevalence: pd.DataFrame) -> list[Finding]:
    """Labels a split cannot evaluate: their AUC there needs both a positive and a negative report.

    As in training and evaluation, a report that does not mention a label is negative for it, and
    an uncertain one is left out; so a split whose reports are all positive (or uncertain) for a
    label has no negative, just as one without a positive report has no positive. A label positive
    in no split can be neither trained nor evaluated: one finding names all its splits, and says so
    when no report mentions the label at all (an expected label the reports never name, or a
    synonym list that matches nothing). Split '' holds the labels of reports of no known split:
    nobody evaluates there, so it has no finding; a split without reports has one finding of its
    own (:func:`_split_findings`), not one per label.
    """
    rows = prevalence[prevalence["split"].ne("") & prevalence["reports"].gt(0)]
    never = rows["label"].map(rows.groupby("label")["positive"].sum()).eq(0)
    negatives = rows["reports"] - rows["positive"] - rows["uncertain"]
    findings = []
    for label, group in rows[never].groupby("label"):
        splits = ", ".join(group["split"])
        lacks = (
            f"is mentioned by no report in any split ({splits})"
            if group[["negative", "uncertain"]].to_numpy().sum() == 0
            else f"has no positive report in any split ({splits})"
        )
        findings.append(
            Finding(
                FindingKind.LABEL_MISSING_IN_SPLIT,
                Severity.MEDIUM,
                (str(label),),
                tuple(group["split"].astype(str)),
                0.0,
                f"label {label} {lacks}: it can be neither trained nor evaluated",
            )
        )
    no_positive = rows["positive"].eq(0) & ~never
    no_negative = negatives.le(0) & ~rows["positive"].eq(0)
    for row in rows[no_positive | no_negative].itertuples():
        lacks = (
            "no positive report"
            if row.positive == 0
            else f"no negative report ({row.positive} of {row.reports} positive, {row.uncertain} uncertain)"
        )
        findings.append(
            Finding(
                FindingKind.LABEL_MISSING_IN_SPLIT,
                Severity.MEDIUM,
                (str(row.label),),
                (str(row.split),),
                float(row.prevalence),
                f"label {row.label} has {lacks} in split {row.split}: it cannot be evaluated there",
            )
        )
    return findings


def _split_findings(splits: pd.DataFrame) -> list[Finding]:
    """Splits that cannot serve a model of volumes and reports: no report, or no volume, there.

    Either no patient fell in a split the build config expects (a small corpus), or all its
    volumes or all its reports failed. Split '' (reports of no known split) is no split.
    """
    findings = []
    for row in splits[splits["split"].ne("") & (splits["reports"].eq(0) | splits["volumes"].eq(0))].itertuples():
        lacks = (
            "is empty (no volume, no report)"
            if row.volumes == row.reports == 0
            else f"has {row.volumes} volumes but no report"
            if row.reports == 0
            else f"has {row.reports} reports but no volume"
        )
        findings.append(
            Finding(
                FindingKind.EMPTY_SPLIT,
                Severity.MEDIUM,
                (),
                (str(row.split),),
                float(row.volumes),
                f"split {row.split} {lacks}: nothing can be trained or evaluated there",
            )
        )
    return findings


def _orphan_findings(orphans: pd.DataFrame) -> list[Finding]:
    """Labels of reports the reports table does not hold (:func:`~ctcorpus.audit.stats.orphan_labels`): one finding.

    They are counted in no prevalence (of reports not in the corpus, in no split), but a labels
    table that names reports the reports table lacks was written by another build than it, or
    the reports were dropped after labelling: a training loader joining them loses those labels.
    """
    if orphans.empty:
        return []
    reports = tuple(sorted(set(orphans["report_id"].astype(str))))
    return [
        Finding(
            FindingKind.ORPHAN_LABELS,
            Severity.MEDIUM,
            reports,
            (),
            float(len(orphans)),
            f"{len(orphans)} label rows name {len(reports)} reports not in the reports table: they are "
            "counted in no prevalence; the labels and reports tables are of other builds, or reports were "
            "dropped after labelling",
        )
    ]


def _most_common(rejected: pd.DataFrame) -> str:
    """The reasons most items were rejected for, a tie named as one ("most for a, b (2 each)").

    Naming only the first of tied reasons read as if it stood out ("most for a (1)" beside b (1)).
    """
    counts = rejected.groupby("reason", sort=True)["items"].sum()
    top = counts[counts == counts.max()]
    names, n = ", ".join(top.index.astype(str)), int(counts.max())
    if len(top) < len(counts):
        return f"most for {names} ({n})" if len(top) == 1 else f"most for {names} ({n} each)"
    return f"all for {names}" if len(top) == 1 else f"{n} each for {names}"


def _quarantine_findings(quarantine: pd.DataFrame) -> list[Finding]:
    """One finding per stage: the items it rejected (left out of the corpus) and the most common reason.

    Items repaired or accepted with a defect are in the corpus: they are named apart, not counted
    as quarantined.
    """
    findings = []
    for stage, group in quarantine.groupby("stage"):
        rejected = group[group["action"] == Action.REJECT.value]
        detail = f"{int(rejected['items'].sum())} items rejected by {stage}"
        if not rejected.empty:
            detail += f", {_most_common(rejected)}"
        kept = group[group["action"] != Action.REJECT.value].groupby("action")["items"].sum()
        if not kept.empty:
            actions = ", ".join(f"{action} {n}" for action, n in kept.items())
            detail += f"; {int(kept.sum())} more kept in the corpus ({actions})"
        findings.append(
            Finding(
                FindingKind.QUARANTINE,
                Severity.INFO,
                tuple(sorted(set(group["reason"].astype(str)))),
                (str(stage),),
                float(rejected["items"].sum()),
                detail,
            )
        )
    return findings


def _stat_findings(stats: CorpusStats, tables: CorpusTables) -> list[Finding]:
    """Data-quality findings from the statistics: empty splits, labels a split cannot evaluate, quarantined items.

    A corpus without a labels table (an optional table) has one finding saying so, where each label
    the manifest expects was one of its own, "mentioned by no report", which no report was asked.
    """
    if "labels" in tables.missing_tables:
        labels = [Finding(FindingKind.LABELS_NOT_COMPARED, Severity.MEDIUM, (tables.name,), (tables.name,), 0.0,
                          f"{tables.name} has no labels table: no label is checked per split, and none can be "
                          "trained or evaluated from this corpus")]
    else:
        labels = _label_findings(stats.label_prevalence)
    return _split_findings(stats.splits) + labels + _quarantine_findings(stats.quarantine)


def _new_across(crossed: list[Finding], within: list[Finding], corpora: tuple[str, str]) -> list[Finding]:
    """The leaks between two corpora that no leak within the audited one already names.

    Against an earlier version that still holds a leak of this one (a copy in train and test of
    both, a patient in two splits of both), every pairing across the versions is a leak too: the
    same ids in the same splits, named again once per direction (three findings of one copy). A
    finding across corpora is new when it names an id, or a split, that no finding of its kind
    within the corpus names with it: a copy whose other half is only in the earlier version, or in
    another split there.
    """
    prefixes = sorted((f"{name}/" for name in corpora), key=len, reverse=True)  # 'v1/' before 'v/'

    def split(group: str) -> str:
        return next(group[len(p) :] for p in prefixes if group.startswith(p))

    known = [(f.kind, set(f.ids), set(f.groups)) for f in within]
    return [
        f
        for f in crossed
        if not any(
            kind == f.kind and set(f.ids) <= ids and {split(g) for g in f.groups} <= splits
            for kind, ids, splits in known
        )
    ]


def _order(findings: list[Finding]) -> tuple[Finding, ...]:
    rank = {s: k for k, s in enumerate(SEVERITY_ORDER)}
    return tuple(sorted(findings, key=lambda f: (rank[f.severity], f.kind.value, f.ids)))


def audit_corpus(
    tables: CorpusTables,
    against: CorpusTables | None = None,
    config: AuditConfig | None = None,
) -> AuditResult:
    """Audit a corpus: statistics, leaks between splits, duplicates, and overlap with / diff from ``against``.

    Parameters
    ----------
    tables:
        The corpus to audit.
    against:
        Another corpus (a previous version, or any corpus a model might be evaluated on). Its
        patients, studies, accessions, persons, volumes and reports are checked against this one
        (a leak a finding within this corpus already names, in the same splits, is not named again),
        and a diff from it to this one is computed. Volume fingerprints of another version than
        the one compared (one built before a new fingerprint version) are left out of the
        near-duplicate volume check alone, and named (``other_fingerprint_version``).
    config:
        Thresholds; the default :class:`~ctcorpus.config.audit.AuditConfig` when ``None``.

    Examples
    --------
    >>> result = audit_corpus(load_corpus_tables("out/v2"), against=load_corpus_tables("out/v1"))  # doctest: +SKIP
    >>> result.count("high")                                                                        # doctest: +SKIP
    0
    """
    config = config or AuditConfig()
    stats = corpus_statistics(tables)
    volumes, reports = _tagged(tables.volumes, tables.name), _tagged(tables.reports, tables.name)
    found = placeholder_ids([volumes, reports], config.placeholder_owners)
    placeholders = {column: set(rows[column]) for column, rows in found.items()}
    within = find_leaks(volumes, reports, config, cross=False, placeholders=placeholders)
    findings = within + placeholder_findings(found, cross=False) + _stat_findings(stats, tables)
    findings += _orphan_findings(orphan_labels(tables))
    checked = coverage(volumes, reports, [tables.name], placeholders)
    diff = None
    if against is not None:
        if against.name == tables.name:  # two folders of one name (v1, a copy's v1): findings and diff tell them apart
            against = replace(against, name=f"{against.name} (other)")
        # the other corpus's placeholders are its own (found in it alone), named with its corpus
        other = placeholder_ids([_tagged(against.volumes, against.name), _tagged(against.reports, against.name)],
                                config.placeholder_owners)
        findings += placeholder_findings(other, cross=True)
        placeholders = {column: placeholders[column] | set(rows[column]) for column, rows in other.items()}
        volumes, reports = (
            pd.concat([_tagged(getattr(corpus, table), corpus.name) for corpus in (tables, against)], ignore_index=True)
            for table in ("volumes", "reports")
        )
        crossed = find_leaks(volumes, reports, config, cross=True, placeholders=placeholders)
        findings += _new_across(crossed, within, (tables.name, against.name))
        checked = coverage(volumes, reports, [tables.name, against.name], placeholders)
        diff = diff_corpora(against, tables)
        findings += diff.findings
    findings += fingerprint_findings(volumes)  # over the volumes checked last: of both corpora, against one
    logger.info("audit corpus=%s findings=%d against=%s", tables.name, len(findings), against and against.name)
    return AuditResult(
        name=tables.name,
        manifest=dict(tables.manifest),
        stats=stats,
        findings=_order(findings),
        coverage=checked,
        against=against.name if against is not None else None,
        diff=diff,
        config=config,
        pipeline_version=__version__,
    )
