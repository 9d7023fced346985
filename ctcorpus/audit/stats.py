"""Corpus statistics: what a person checks before training, as tidy DataFrames (vectorized pandas).

Every frame is long-form (one row per split x value) so the HTML report plots it and the JSON
carries it without reshaping.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ctcorpus.audit.tables import EXPECTED_SECTIONS, CorpusTables, name_as_written, of_reports, report_level
from ctcorpus.enums import Action, LabelState
from ctcorpus.taxonomy import CT_RATE_LABELS

logger = logging.getLogger(__name__)

#: Volume columns counted by value, per split.
CATEGORICAL: tuple[str, ...] = ("kernel", "manufacturer", "contrast", "mask_source")
#: Volume columns summarized by quantiles, per split.
NUMERIC: tuple[str, ...] = ("spacing_x", "spacing_y", "spacing_z", "n_slices")
_STATES: tuple[str, ...] = (LabelState.POSITIVE.value, LabelState.NEGATIVE.value, LabelState.UNCERTAIN.value)


@dataclass(frozen=True, slots=True)
class CorpusStats:
    """The statistics of one corpus.

    Attributes
    ----------
    splits:
        split, volumes, patients and studies with a volume, reports; a split the build config
        expects (:func:`expected_splits`) but no patient fell in is a row of zeros. In every frame,
        split '' holds the rows of no known split (a null split).
    label_prevalence:
        split, label, positive, negative, uncertain, reports, prevalence (positive / reports of
        the split), from report-level labels (``sentence_index == -1``) of the reports table's
        reports (:func:`orphan_labels` are left out); a label the build config expects
        (:func:`expected_labels`) but no report mentions is a row of zeros.
    label_cooccurrence:
        label_a, label_b, reports (positive for both), over all splits (orphans left out); the
        diagonal is each label's positive count.
    report_lengths:
        split, reports, words_median, words_p5, words_p95, sentences_median, empty.
    missing_sections:
        split, section, missing, share.
    volume_values:
        field (kernel, manufacturer, contrast, mask_source), value, split, volumes.
    volume_numeric:
        field (spacing_x/y/z, n_slices), split, min, p5, median, p95, max.
    snippet_anatomies, snippet_labels:
        anatomy / label, snippets.
    quarantine:
        stage, reason, action (reject / repair / accept), items; only rejected items are left out
        of the corpus; a row naming no stage or reason is counted under '(unknown)'.
    """

    splits: pd.DataFrame
    label_prevalence: pd.DataFrame
    label_cooccurrence: pd.DataFrame
    report_lengths: pd.DataFrame
    missing_sections: pd.DataFrame
    volume_values: pd.DataFrame
    volume_numeric: pd.DataFrame
    snippet_anatomies: pd.DataFrame
    snippet_labels: pd.DataFrame
    quarantine: pd.DataFrame


def expected_splits(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The splits the corpus's build config gives patients (``outputs.split_fractions`` above 0).

    A split no patient fell in (8 patients at a 10 % test fraction) has no row in any table: only
    the manifest says it should be there. A corpus without that config expects no split.
    """
    outputs = (manifest.get("config") or {}).get("outputs") or {}
    return tuple(sorted(split for split, fraction in (outputs.get("split_fractions") or {}).items() if fraction > 0))


def expected_labels(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The labels the corpus's labeller looks for: the 18 CT-RATE labels and those its build config adds.

    The labels table holds a row only for a label a report mentions, so a label no report names is
    in no table: only the manifest's ``reports`` config says it should be there (a key of
    ``extra_synonyms`` not among the CT-RATE labels is a label of the site's own). A corpus without
    that config (not built by ctcorpus) expects no label: its labels need not be CT-RATE's.
    """
    reports = (manifest.get("config") or {}).get("reports")
    if reports is None:
        return ()
    return tuple(sorted({*CT_RATE_LABELS, *(reports.get("extra_synonyms") or {})}))


def _split_of(frame: pd.DataFrame) -> pd.Series:
    """Each row's split, '' for none: counted under no known split, as the labels of its reports are.

    Grouped by a null split, the rows were left out of every count (a volume in no split row, a
    report of no split counted in no report length, its labels out of 0 reports).
    """
    return frame["split"].fillna("")


def _split_sizes(tables: CorpusTables) -> pd.DataFrame:
    volumes = tables.volumes.groupby(_split_of(tables.volumes)).agg(
        volumes=("volume_id", "nunique"), patients=("patient_id", "nunique"), studies=("study_id", "nunique")
    )
    reports = tables.reports.groupby(_split_of(tables.reports)).agg(reports=("report_id", "nunique"))
    frame = volumes.join(reports, how="outer")
    frame = frame.reindex(frame.index.union(pd.Index(expected_splits(tables.manifest)))).fillna(0).astype(np.int64)
    return frame.rename_axis("split").reset_index()


def orphan_labels(tables: CorpusTables) -> pd.DataFrame:
    """Label rows whose report is not in the reports table: counted in no statistic.

    Counted under split '' (no known split), they were divided by the reports of no split alone
    (none, or a few): a prevalence there above 1, of reports the corpus does not hold.
    """
    return tables.labels[~of_reports(tables)]


def _report_labels(tables: CorpusTables) -> pd.DataFrame:
    """Report-level labels of the reports table's reports, joined to their report's split ('' for none)."""
    # the report's split rules, not one the labels table may carry
    labels = report_level(tables.labels[of_reports(tables)]).drop(columns="split", errors="ignore")
    splits = tables.reports[["report_id", "split"]].drop_duplicates("report_id")
    merged = labels.merge(splits, on="report_id", how="left")
    merged["split"] = _split_of(merged)
    merged["state"] = merged["state"].astype(str)
    return merged


def _prevalence(tables: CorpusTables, report_labels: pd.DataFrame) -> pd.DataFrame:
    counts = pd.crosstab([report_labels["split"], report_labels["label"]], report_labels["state"])
    # every split x every label seen anywhere or expected: a label never mentioned in a split (or in
    # any) is a zero row, and a split with volumes but no report (its reports all failed) has zero rows, not none
    volume_splits = set(_split_of(tables.volumes))
    report_splits = set(_split_of(tables.reports))
    splits = sorted(report_splits | volume_splits | set(report_labels["split"]))
    labels = sorted(set(report_labels["label"]) | set(expected_labels(tables.manifest)))
    grid = pd.MultiIndex.from_product([splits, labels], names=["split", "label"])
    counts = counts.reindex(index=grid, columns=list(_STATES), fill_value=0)
    counts.columns = list(_STATES)
    frame = counts.reset_index()
    sizes = tables.reports.groupby(_split_of(tables.reports))["report_id"].nunique().rename("reports")
    frame = frame.merge(sizes, left_on="split", right_index=True, how="left")
    frame["reports"] = frame["reports"].fillna(0).astype(np.int64)
    frame["prevalence"] = np.where(frame["reports"] > 0, frame["positive"] / frame["reports"].clip(lower=1), 0.0)
    return frame.sort_values(["split", "label"]).reset_index(drop=True)


def _cooccurrence(report_labels: pd.DataFrame) -> pd.DataFrame:
    positive = report_labels[report_labels["state"] == LabelState.POSITIVE.value][["report_id", "label"]]
    pairs = positive.merge(positive, on="report_id", suffixes=("_a", "_b"))
    frame = pairs.groupby(["label_a", "label_b"]).size().rename("reports").reset_index()
    return frame.astype({"reports": np.int64})


def _report_lengths(reports: pd.DataFrame) -> pd.DataFrame:
    """Words and sentences per report, by split; a sentence count written as text ('3', '3.0') is read
    as a number (cast to int, '3.0' stopped the audit with a ValueError naming no table), a null or
    unreadable one as 0."""
    words = reports["text"].fillna("").astype(str).str.split().str.len()
    sentences = pd.to_numeric(reports["n_sentences"].astype(object), errors="coerce").fillna(0)
    frame = reports.assign(words=words, sentences=sentences, split=_split_of(reports))
    grouped = frame.groupby("split")
    out = pd.DataFrame(
        {
            "reports": grouped.size(),
            "words_median": grouped["words"].median(),
            "words_p5": grouped["words"].quantile(0.05),
            "words_p95": grouped["words"].quantile(0.95),
            "sentences_median": grouped["sentences"].median(),
            "empty": grouped["words"].agg(lambda w: int((w == 0).sum())),
        }
    )
    return out.rename_axis("split").reset_index()


def _missing_sections(reports: pd.DataFrame) -> pd.DataFrame:
    present = reports["sections"].map(lambda s: set(s) if isinstance(s, list | tuple | np.ndarray) else set())
    rows = []
    for split, group in present.groupby(_split_of(reports)):
        for section in EXPECTED_SECTIONS:
            missing = int((~group.map(lambda s, sec=section: sec in s)).sum())
            rows.append((split, section, missing, missing / max(len(group), 1)))
    return pd.DataFrame(rows, columns=["split", "section", "missing", "share"])


def _volume_values(volumes: pd.DataFrame) -> pd.DataFrame:
    volumes = volumes.assign(split=_split_of(volumes))
    parts = []
    for column in CATEGORICAL:
        values = volumes[column].astype(object).where(volumes[column].notna(), "(missing)").astype(str)
        counts = volumes.groupby([values.rename("value"), volumes["split"]]).size().rename("volumes").reset_index()
        parts.append(counts.assign(field=column))
    columns = ["field", "value", "split", "volumes"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _volume_numeric(volumes: pd.DataFrame) -> pd.DataFrame:
    long = volumes.assign(split=_split_of(volumes)).melt(
        id_vars=["split"], value_vars=list(NUMERIC), var_name="field", value_name="value"
    )
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    grouped = long.groupby(["field", "split"])["value"]
    frame = pd.DataFrame(
        {
            "min": grouped.min(),
            "p5": grouped.quantile(0.05),
            "median": grouped.median(),
            "p95": grouped.quantile(0.95),
            "max": grouped.max(),
        }
    )
    return frame.reset_index()


def _exploded_counts(snippets: pd.DataFrame, column: str, name: str) -> pd.DataFrame:
    """Snippets per value, most first; ties by name, so the rows' order does not change audit.json."""
    values = snippets[column].explode().dropna()
    counts = values.value_counts().rename_axis(name).rename("snippets").reset_index()
    return counts.sort_values(["snippets", name], ascending=[False, True]).reset_index(drop=True)


#: The stage or reason of a quarantine row that names none.
UNKNOWN = "(unknown)"


def _named(values: pd.Series, default: str) -> pd.Series:
    """A column as text (:func:`~ctcorpus.audit.tables.name_as_written`), a null or blank as ``default``."""
    return values.astype(object).map(name_as_written).fillna(default)


def _quarantine(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Items per stage, reason and action, most first.

    The quarantine table also records defects an item was repaired or accepted with (it stays in
    the corpus), so the action is kept; a row without one counts as rejected, the records' default.
    A row without a stage or reason (a hand-made table) is counted under '(unknown)', with a
    warning: grouped by a null, it was left out of every count; the values are text, so a table
    numbering its reasons is drawn too.
    """
    reject = Action.REJECT.value
    action = quarantine["action"] if "action" in quarantine.columns else pd.Series(None, index=quarantine.index)
    named = quarantine.assign(
        stage=_named(quarantine["stage"], UNKNOWN), reason=_named(quarantine["reason"], UNKNOWN),
        action=_named(action, reject),
    )
    unknown = int((named["stage"].eq(UNKNOWN) | named["reason"].eq(UNKNOWN)).sum())
    if unknown:
        logger.warning("%d quarantine rows name no stage or no reason: counted under %r", unknown, UNKNOWN)
    counts = named.groupby(["stage", "reason", "action"]).size().rename("items")
    return counts.reset_index().sort_values("items", ascending=False, kind="stable").reset_index(drop=True)


def corpus_statistics(tables: CorpusTables) -> CorpusStats:
    """Compute the statistics of one corpus (pure; vectorized over the tables).

    Examples
    --------
    >>> stats = corpus_statistics(tables)            # doctest: +SKIP
    >>> stats.label_prevalence.query("split == 'test'")  # doctest: +SKIP
    """
    report_labels = _report_labels(tables)
    return CorpusStats(
        splits=_split_sizes(tables),
        label_prevalence=_prevalence(tables, report_labels),
        label_cooccurrence=_cooccurrence(report_labels),
        report_lengths=_report_lengths(tables.reports),
        missing_sections=_missing_sections(tables.reports),
        volume_values=_volume_values(tables.volumes),
        volume_numeric=_volume_numeric(tables.volumes),
        snippet_anatomies=_exploded_counts(tables.snippets, "anatomies", "anatomy"),
        snippet_labels=_exploded_counts(tables.snippets, "labels", "label"),
        quarantine=_quarantine(tables.quarantine),
    )
