"""Dataset diff between two corpus versions: samples added, removed, changed (which fields), label shifts.

Volumes are matched by ``volume_id`` and reports by ``report_id`` (pseudonymized ids are stable
across versions of one dataset). A volume whose split changed is the dangerous change: a model
evaluated on the old test split may have trained on it in the new version, so it is reported as a
finding as well. So is a change of the ctcorpus version that built the corpus (its manifest's
``pipeline_version``) or of what made a table's rows (its manifest's ``producers``: the report
rules' digest, the segmenter; a source install changes them, not its version): a changed field or
label may then come from the pipeline, not from the data. A version without a labels table (an
optional table) has no label shift: it is named (``labels_not_compared``), not read as reports
that mention no label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctcorpus.audit.findings import Finding, FindingKind, Severity
from ctcorpus.audit.tables import CorpusTables, of_reports, report_level
from ctcorpus.enums import LabelState

#: Fields compared per volume (the fingerprint follows the HU hash and is not compared itself).
VOLUME_FIELDS: tuple[str, ...] = (
    "patient_id",
    "study_id",
    "accession_id",
    "series_id",
    "split",
    "hu_sha256",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "n_slices",
    "kernel",
    "manufacturer",
    "contrast",
    "mask_source",
)
#: Fields compared per report.
REPORT_FIELDS: tuple[str, ...] = ("study_id", "patient_id", "split", "text", "n_sentences")
#: Columns of :attr:`CorpusDiff.label_shift`.
LABEL_SHIFT_COLUMNS: tuple[str, ...] = (
    "label", "old_positive", "old_prevalence", "new_positive", "new_prevalence", "delta", "flipped"
)


@dataclass(frozen=True, slots=True)
class SampleDiff:
    """Added, removed and changed ids of one table; ``changed`` has columns id, fields (comma-joined)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: pd.DataFrame
    field_counts: pd.DataFrame  # field, changed


@dataclass(frozen=True, slots=True)
class CorpusDiff:
    """What changed from ``old_name`` to ``new_name``.

    ``label_shift`` has columns label, old_positive, new_positive, old_prevalence, new_prevalence,
    delta (new - old prevalence) and flipped (reports in both versions whose state changed); no
    row where a version has no labels table (a ``labels_not_compared`` finding says so).
    """

    old_name: str
    new_name: str
    volumes: SampleDiff
    reports: SampleDiff
    label_shift: pd.DataFrame
    findings: tuple[Finding, ...]


def _keyed(frame: pd.DataFrame, key: str, fields: tuple[str, ...]) -> pd.DataFrame:
    """The ``fields`` a frame has, indexed by ``key`` as strings (first row per key)."""
    out = frame.drop_duplicates(key).set_index(key)[[f for f in fields if f in frame.columns]]
    out.index = out.index.astype(str)
    return out


def _as_text(values: pd.Series) -> pd.Series:
    """Values as strings, floats rounded to 6 decimals."""
    return (values.round(6) if pd.api.types.is_float_dtype(values) else values).astype(str)


def _unequal(before: pd.Series, after: pd.Series) -> pd.Series:
    """Whether each value changed between versions; a null (None or NaN) in both is no change.

    Where a version stores a column as numbers, the values both versions hold as numbers (or as
    text that reads as one) are compared as numbers (rounded to 6 decimals): an int column that
    became float in the other version (a NaN elsewhere) is unchanged although 300 prints as
    '300.0', and so is one a hand-made copy writes as text ('300.0'). Other values are compared as
    text. Nulls are matched before either: as text a null is 'None' or 'nan' (pandas 2), or stays
    null and unequal to itself (pandas 3).
    """
    both_null = before.isna() & after.isna()
    changed = _as_text(before).ne(_as_text(after))
    if pd.api.types.is_numeric_dtype(before) or pd.api.types.is_numeric_dtype(after):
        old, new = (pd.to_numeric(v.astype(object), errors="coerce").astype("float64").round(6) for v in (before, after))
        changed = changed.mask(old.notna() & new.notna(), old.ne(new))
    return changed & ~both_null


def sample_diff(old: pd.DataFrame, new: pd.DataFrame, key: str, fields: tuple[str, ...]) -> SampleDiff:
    """Compare two versions of a table row by row on ``fields`` (vectorized)."""
    before, after = _keyed(old, key, fields), _keyed(new, key, fields)
    common = before.index.intersection(after.index)
    shared = [f for f in fields if f in before.columns and f in after.columns]
    unequal = pd.DataFrame(
        {f: _unequal(before.loc[common, f], after.loc[common, f]) for f in shared}, index=common, dtype=bool
    )
    flagged = unequal[unequal.any(axis=1)]
    names = np.asarray(shared, dtype=object)
    fields_changed = [",".join(names[mask]) for mask in flagged.to_numpy(dtype=bool)]
    changed = pd.DataFrame({"id": flagged.index.astype(str), "fields": pd.Series(fields_changed, dtype=object)})
    counts = unequal.sum().rename("changed").rename_axis("field").reset_index()
    return SampleDiff(
        added=tuple(sorted(after.index.difference(before.index))),
        removed=tuple(sorted(before.index.difference(after.index))),
        changed=changed.sort_values("id").reset_index(drop=True),
        field_counts=counts[counts["changed"] > 0].reset_index(drop=True),
    )


def _positive_share(tables: CorpusTables) -> pd.DataFrame:
    """Per label: reports positive for it and their share of the corpus's reports (orphan labels left out)."""
    labels = report_level(tables.labels[of_reports(tables)])
    positive = labels[labels["state"].astype(str) == LabelState.POSITIVE.value]
    counts = positive.groupby("label")["report_id"].nunique()
    return pd.DataFrame({"positive": counts, "prevalence": counts / max(tables.reports["report_id"].nunique(), 1)})


def _flips(old: CorpusTables, new: CorpusTables) -> pd.Series:
    """Per label, reports in both versions whose report-level state changed.

    The labels table has rows only for labels a report mentions, so a label without a row is
    ``absent``: a positive that is no longer mentioned is a flip too.
    """
    key = ["report_id", "label"]
    states = [report_level(t.labels)[[*key, "state"]].astype({"state": str}) for t in (old, new)]
    merged = states[0].merge(states[1], on=key, how="outer", suffixes=("_old", "_new"))
    common = pd.Index(old.reports["report_id"]).intersection(pd.Index(new.reports["report_id"]))
    absent = LabelState.ABSENT.value
    merged = merged[merged["report_id"].isin(common)].fillna({"state_old": absent, "state_new": absent})
    return merged[merged["state_old"] != merged["state_new"]].groupby("label").size()


def label_shift(old: CorpusTables, new: CorpusTables) -> pd.DataFrame:
    """Per label: positive counts and prevalence in both versions, and reports whose state flipped."""
    before, after = _positive_share(old), _positive_share(new)
    flips = _flips(old, new)
    frame = before.add_prefix("old_").join(after.add_prefix("new_"), how="outer")
    frame = frame.reindex(frame.index.union(flips.index)).fillna(0.0)  # a label may flip without a positive
    frame["delta"] = frame["new_prevalence"] - frame["old_prevalence"]
    frame["flipped"] = flips.reindex(frame.index, fill_value=0)
    frame = frame.astype({"old_positive": np.int64, "new_positive": np.int64, "flipped": np.int64})
    return frame.rename_axis("label").reset_index().sort_values("label").reset_index(drop=True)


def _unlabelled(old: CorpusTables, new: CorpusTables) -> list[Finding]:
    """A finding naming the versions without a labels table, whose labels cannot be compared.

    Read as an empty table, every label of every report both versions hold counted as flipped to
    or from absent, and every prevalence as shifted to or from 0: a shift of the copy, not of the data.
    """
    lacking = tuple(tables.name for tables in (old, new) if "labels" in tables.missing_tables)
    if not lacking:
        return []
    return [
        Finding(
            FindingKind.LABELS_NOT_COMPARED,
            Severity.LOW,
            lacking,
            (old.name, new.name),
            1.0,
            f"{' and '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no labels table: label shifts "
            f"from {old.name} to {new.name} could not be computed",
        )
    ]


def _changed_producers(old: CorpusTables, new: CorpusTables) -> dict[tuple[str, str], list[str]]:
    """The tables of both manifests whose rows name other producers, by (old, new) producers."""
    before, after = (tables.manifest.get("producers") or {} for tables in (old, new))
    changed: dict[tuple[str, str], list[str]] = {}
    for table in sorted(before.keys() & after.keys()):
        was, now = (", ".join(sorted(producers[table])) for producers in (before, after))
        if was != now:
            changed.setdefault((was, now), []).append(table)
    return changed


def diff_corpora(old: CorpusTables, new: CorpusTables) -> CorpusDiff:
    """What changed from ``old`` to ``new``: samples added, removed, changed, and label shifts.

    Examples
    --------
    >>> diff = diff_corpora(load_corpus_tables("v1"), load_corpus_tables("v2"))   # doctest: +SKIP
    >>> diff.volumes.field_counts                                                   # doctest: +SKIP
    """
    volumes = sample_diff(old.volumes, new.volumes, "volume_id", VOLUME_FIELDS)
    moved = volumes.changed[volumes.changed["fields"].str.split(",").map(lambda f: "split" in f)]
    findings = []
    if not moved.empty:
        findings.append(
            Finding(
                FindingKind.SPLIT_CHANGED,
                Severity.MEDIUM,
                tuple(moved["id"]),
                (old.name, new.name),
                1.0,
                f"{len(moved)} volumes changed split between {old.name} and {new.name}",
            )
        )
    built = [str(tables.manifest.get("pipeline_version") or "") for tables in (old, new)]
    rebuilt = all(built) and built[0] != built[1]
    producers = _changed_producers(old, new)
    if rebuilt or producers:
        said = [f"{old.name} was built by ctcorpus {built[0]}, {new.name} by {built[1]}"] if rebuilt else []
        said += [f"{', '.join(tables)} made by {was} in {old.name}, by {now} in {new.name}"
                 for (was, now), tables in producers.items()]
        findings.append(
            Finding(
                FindingKind.PIPELINE_CHANGED,
                Severity.LOW,
                tuple(built) if rebuilt else tuple(sorted(t for tables in producers.values() for t in tables)),
                (old.name, new.name),
                1.0,
                "; ".join(said) + ": a changed field may come from the pipeline, not from the data",
            )
        )
    not_compared = _unlabelled(old, new)
    return CorpusDiff(
        old_name=old.name,
        new_name=new.name,
        volumes=volumes,
        reports=sample_diff(old.reports, new.reports, "report_id", REPORT_FIELDS),
        label_shift=pd.DataFrame(columns=list(LABEL_SHIFT_COLUMNS)) if not_compared else label_shift(old, new),
        findings=tuple(findings + not_compared),
    )
