"""The audit's input: a corpus as DataFrames (:class:`CorpusTables`), and the reader of a corpus folder.

The core of the audit is pure over these frames; only :func:`load_corpus_tables` touches files.
Columns the audit needs are listed in :data:`COLUMNS`; a frame that lacks one, or holds rows the
statistics cannot count (a volume or report without an id, a label state not ctcorpus'), is an
:class:`~ctcorpus.errors.AuditError` naming the table and the column, so a mapping mistake is caught
before any number is computed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from ctcorpus.enums import LabelState
from ctcorpus.errors import AuditError
from ctcorpus.outputs.store import moved_aside

logger = logging.getLogger(__name__)

#: Required columns per table (extra columns are kept and ignored).
COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # one row per training volume; fingerprint: ctcorpus.audit.volume_fingerprint (list of float32),
        # optionally with its fingerprint_version (none: version 1); patient_key: keyed hash of name + birth date (same person under two patient ids)
        "volumes": (
            "volume_id",
            "patient_id",
            "study_id",
            "accession_id",
            "series_id",
            "split",
            "hu_sha256",
            "fingerprint",
            "spacing_x",
            "spacing_y",
            "spacing_z",
            "n_slices",
            "kernel",
            "manufacturer",
            "contrast",
            "mask_source",
            "patient_key",
        ),
        # one row per report; sections: list of section names present (findings, impression, ...)
        "reports": ("report_id", "study_id", "patient_id", "split", "text", "n_sentences", "sections"),
        # sentence_index -1 = report level; state: ctcorpus.enums.LabelState value
        "labels": ("report_id", "sentence_index", "label", "state"),
        # anatomies, labels: lists of strings
        "snippets": ("volume_id", "anatomies", "labels"),
        "quarantine": ("stage", "reason"),
    }
)

#: Tables a corpus may lack (an empty frame with the required columns stands in).
OPTIONAL_TABLES: tuple[str, ...] = ("labels", "snippets", "quarantine")

#: Sections a complete report has (CT-RATE's columns); missing ones are counted.
EXPECTED_SECTIONS: tuple[str, ...] = ("clinical_information", "technique", "findings", "impression")


def report_level(labels: pd.DataFrame) -> pd.DataFrame:
    """The report-level rows of a labels table (``sentence_index == -1``): what prevalence counts."""
    return labels[labels["sentence_index"].astype("int64") == -1]


def of_reports(tables: CorpusTables) -> pd.Series:
    """Which label rows name a report of the reports table: the others (orphans) count in no
    prevalence, of this corpus or in a diff (divided by the corpus's reports, they could exceed 1)."""
    return tables.labels["report_id"].isin(tables.reports["report_id"])


def _as_written(value: object) -> str | None:
    """One value as text, a whole number as written in a folder name or a CSV (1.0 -> '1'); a null as ``None``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def name_as_written(value: object) -> str | None:
    """One split, stage or reason as text (:func:`_as_written`), spaces around it dropped; a null or a
    blank as ``None``."""
    return (_as_written(value) or "").strip() or None


def ids_as_text(values: pd.Series) -> pd.Series:
    """An id column as text (:func:`_as_written`), nulls kept; a text column as it is.

    A CSV round trip makes number-like ids numbers (int64, or float64 with a null): the diff
    against the text ids of another version stopped with a ValueError (merging int and text
    report ids), and a labels table of number ids beside a reports table of text ones read as
    labels of no report (orphans).
    """
    if pd.api.types.is_string_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype):
        return values
    return values.astype(object).map(_as_written).astype(object)


def split_as_text(values: pd.Series) -> pd.Series:
    """A ``split`` column as text, nulls kept, a blank split ('' or spaces) made one.

    A table ctcorpus did not write may number its splits (``0``/``1``: a hand-made table, or a
    ``split=0/`` folder layout written as an int column; with a null, pandas reads them as floats):
    sorted or compared beside the text splits of another table, or of the corpus checked against,
    the ints stopped the audit with a TypeError naming no file. It may write no split as a blank
    (a CSV's empty cell): as a split of its own, a patient with a volume in train and a report of
    split '' was a leak between '' and train (high), where a null split is unknown and no leak;
    and 'train ' was a split beside 'train'.
    """
    if pd.api.types.is_string_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype):
        text = values.str.strip()
        return text.mask(text.eq("").fillna(False).astype(bool))
    return values.astype(object).map(name_as_written).astype(object)


def empty_table(name: str) -> pd.DataFrame:
    """An empty frame with the required columns of table ``name``."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS[name]})


def _check_labels(labels: pd.DataFrame, corpus: str) -> None:
    """Refuse labels the statistics cannot count, naming the column and the values.

    A state other than ctcorpus' (CheXpert's 1/0/-1, 'POSITIVE') was counted as no state: every
    label read as mentioned by no report, without a word; a row without a label stopped the audit
    with a TypeError, sorting the null among the label names, and one without a whole
    ``sentence_index`` (a table of report-level labels only, left null) with a TypeError naming
    nothing.
    """
    states = {str(s) for s in pd.unique(labels["state"].astype(object))} - {s.value for s in LabelState}
    if states:
        raise AuditError(
            f"table 'labels' of corpus {corpus!r} has states {sorted(states)[:5]} in column 'state', "
            f"not {', '.join(s.value for s in LabelState)}; map them first"
        )
    if labels["label"].isna().any():
        raise AuditError(
            f"table 'labels' of corpus {corpus!r} has {int(labels['label'].isna().sum())} rows without a "
            "label in column 'label'; drop or name them first"
        )
    index = pd.to_numeric(labels["sentence_index"].astype(object), errors="coerce")
    if (unreadable := int((index.isna() | (index % 1 != 0)).sum())) > 0:
        raise AuditError(
            f"table 'labels' of corpus {corpus!r} has {unreadable} rows without a whole number in column "
            "'sentence_index'; give a report's own label -1 first"
        )


def _check_ids(frame: pd.DataFrame, table: str, corpus: str) -> None:
    """Refuse volumes or reports without an id (null or empty), naming the column and the rows.

    The statistics count a split's volumes and reports by id: rows without one counted as none,
    and a split holding only such rows read as 'empty (no volume, no report)'. ctcorpus never
    writes one (the column is not nullable); a hand-made or another site's table may.
    """
    column = f"{table.removesuffix('s')}_id"
    missing = frame[column].isna() | frame[column].astype(str).eq("")
    if missing.any():
        splits = ", ".join(sorted(set(split_as_text(frame.loc[missing, "split"]).fillna("(none)"))))
        raise AuditError(
            f"table {table!r} of corpus {corpus!r} has {int(missing.sum())} rows without an id in column "
            f"{column!r} (in splits {splits}); drop or name them first"
        )


@dataclass(frozen=True, slots=True)
class CorpusTables:
    """One corpus version as DataFrames: what the audit reads.

    Parameters
    ----------
    volumes, reports, labels, snippets, quarantine:
        Frames with at least the columns of :data:`COLUMNS` (see there for meaning).
    manifest:
        The corpus manifest (``dataset_version``, ``pipeline_version``, counts, ...).
    name:
        How the corpus is named in findings (e.g. its folder name or version).
    missing_tables:
        The :data:`OPTIONAL_TABLES` the corpus folder lacks, their frames empty stand-ins: an
        empty labels table says no report mentions a label, a missing one says nothing.

    The ``split`` of volumes and reports is kept as text (:func:`split_as_text`), as is every
    ``*_id`` column of :data:`COLUMNS` (:func:`ids_as_text`).

    Examples
    --------
    >>> tables = CorpusTables(volumes=empty_table("volumes"), reports=empty_table("reports"))
    >>> tables.volumes.empty
    True
    """

    volumes: pd.DataFrame
    reports: pd.DataFrame
    labels: pd.DataFrame = field(default_factory=lambda: empty_table("labels"))
    snippets: pd.DataFrame = field(default_factory=lambda: empty_table("snippets"))
    quarantine: pd.DataFrame = field(default_factory=lambda: empty_table("quarantine"))
    manifest: Mapping[str, Any] = field(default_factory=dict)
    name: str = "corpus"
    missing_tables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for table, columns in COLUMNS.items():
            frame = getattr(self, table)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise AuditError(f"table {table!r} of corpus {self.name!r} lacks columns {missing}; map them first")
        _check_labels(self.labels, self.name)
        # whole numbers, of any type (-1.0, '-1.0' of a hand-made table): report_level reads them as int64
        index = pd.to_numeric(self.labels["sentence_index"].astype(object)).astype("int64")
        object.__setattr__(self, "labels", self.labels.assign(sentence_index=index))
        for table, columns in COLUMNS.items():  # frozen: the text ids and splits replace the frames as given
            frame = getattr(self, table)
            text = {column: ids_as_text(frame[column]) for column in columns if column.endswith("_id")}
            if "split" in columns:
                text["split"] = split_as_text(frame["split"])
            object.__setattr__(self, table, frame.assign(**text))
        for table in ("volumes", "reports"):
            _check_ids(getattr(self, table), table, self.name)


def _listed(manifest: Mapping[str, Any], name: str) -> dict[str, int | None] | None:
    """The Parquet files of table ``name`` a ctcorpus manifest lists, with their rows if given (``None``: it lists no files).

    A version copied in part (a split folder left behind, a file lost) still reads as a corpus:
    a missing ``samples`` file silently drops its volumes from the copy checks, a missing
    ``labels`` file reads as labels no report mentions. Only the manifest says what should be there.
    """
    if not isinstance(manifest.get("files"), list):
        return None
    return {
        str(entry["path"]): entry.get("count")
        for entry in manifest["files"]
        if isinstance(entry, dict) and entry.get("kind") == "parquet" and entry.get("table") == name and "path" in entry
    }


def _read_table(root: Path, name: str, listed: dict[str, int | None] | None = None) -> pd.DataFrame | None:
    """All Parquet files under ``tables/<name>/`` (hive ``split=<x>/`` folders add a ``split`` column).

    With ``listed`` (the manifest's files of the table, :func:`_listed`), a listed file that is
    missing, a file not listed, or one whose rows differ from the manifest's count is an error
    naming the file: the audit of a partial or altered version would report on what is left.
    """
    folder = root / "tables" / name
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if listed is not None:
        found = {path.relative_to(root).as_posix() for path in files}
        for odd, what in ((listed.keys() - found, "missing"), (found - listed.keys(), "not listed in manifest.json")):
            if odd:
                more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
                raise AuditError(
                    f"a file of table {name!r} is {what}{more}: the version is partial or altered; run ctcorpus verify",
                    path=root / min(odd),
                )
    if not files:
        return None
    frames = []
    for path in files:
        try:
            frame = pq.read_table(path, partitioning=None).to_pandas()
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise AuditError(f"cannot read table {name!r}: {exc}", path=path) from None
        rows = listed.get(path.relative_to(root).as_posix()) if listed is not None else None
        if rows is not None and rows != len(frame):
            raise AuditError(
                f"table {name!r} has {len(frame)} rows in this file, manifest.json says {rows}; run ctcorpus verify",
                path=path,
            )
        part = next((p.split("=", 1)[1] for p in path.relative_to(folder).parts[:-1] if p.startswith("split=")), None)
        if part is not None and "split" not in frame.columns:
            frame["split"] = part
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _spacing(values: pd.Series, axis: int) -> pd.Series:
    """One axis of a list column of (x, y, z) spacings."""
    return values.map(lambda v: float(v[axis]) if v is not None and len(v) > axis else float("nan"))


def _from_pipeline(frames: dict[str, pd.DataFrame], extra: dict[str, pd.DataFrame]) -> None:
    """Fill audit columns from the pipeline's own tables where a frame lacks them (in place).

    The pipeline keeps ``hu_sha256``, ``fingerprint`` (and its version) and ``mask_source`` in ``samples``, the
    manufacturer in ``series``, spacing as a list, report sections as ``section_names``; a
    ``patient_key`` is not written by every pipeline version and defaults to '' (that check is
    then skipped, with a warning).
    """
    volumes = frames["volumes"]
    samples, series = extra.get("samples"), extra.get("series")
    if samples is not None:
        moved = ("hu_sha256", "fingerprint", "fingerprint_version", "mask_source", "patient_key")
        wanted = [c for c in moved if c not in volumes.columns and c in samples.columns]
        volumes = volumes.merge(
            samples[["volume_id", *wanted]].drop_duplicates("volume_id"), on="volume_id", how="left"
        )
    if series is not None and "manufacturer" not in volumes.columns:
        makers = series[["series_id", "manufacturer"]].drop_duplicates("series_id")
        volumes = volumes.merge(makers, on="series_id", how="left")
    spacing = "native_spacing_mm" if "native_spacing_mm" in volumes.columns else "spacing_mm"
    for axis, column in enumerate(("spacing_x", "spacing_y", "spacing_z")):
        if column not in volumes.columns and spacing in volumes.columns:
            volumes[column] = _spacing(volumes[spacing], axis)
    if "patient_key" not in volumes.columns:
        logger.warning("volumes have no patient_key: the same-person-under-two-ids check is skipped")
        volumes["patient_key"] = ""
    reports = frames["reports"]
    if "sections" not in reports.columns and "section_names" in reports.columns:
        reports = reports.assign(sections=reports["section_names"])
    if "split" not in reports.columns and "split" in volumes.columns:
        split_of = volumes.drop_duplicates("patient_id").set_index("patient_id")["split"]
        reports = reports.assign(split=reports["patient_id"].map(split_of).fillna(""))
    frames["volumes"], frames["reports"] = volumes, reports


def load_corpus_tables(root: str | Path, name: str | None = None) -> CorpusTables:
    """Read a corpus folder (``tables/<table>/[split=<x>/]*.parquet``, ``manifest.json``) into :class:`CorpusTables`.

    ``volumes`` and ``reports`` must exist; the optional tables (labels, snippets, quarantine)
    default to empty frames so an early corpus can still be audited. Columns the pipeline keeps
    elsewhere (``samples``, ``series``) are joined in; anything still missing is an error naming it.

    Examples
    --------
    >>> tables = load_corpus_tables("out/corpus-v2")   # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise AuditError(moved_aside(root) or "corpus folder not found", path=root)
    manifest: dict[str, Any] = {}
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AuditError(f"manifest is not valid JSON: {exc}", path=manifest_path) from None
    frames: dict[str, pd.DataFrame] = {}
    missing = []
    for table in COLUMNS:
        frame = _read_table(root, table, _listed(manifest, table))
        if frame is None:
            if table not in OPTIONAL_TABLES:
                raise AuditError(f"required table {table!r} is missing (no tables/{table}/*.parquet)", path=root)
            frame = empty_table(table)
            missing.append(table)
        frames[table] = frame
    extra = {
        name: frame for name in ("samples", "series") if (frame := _read_table(root, name, _listed(manifest, name))) is not None
    }
    _from_pipeline(frames, extra)
    label = name or str(manifest.get("dataset_version") or root.name)
    try:
        return CorpusTables(manifest=manifest, name=label, missing_tables=tuple(missing), **frames)
    except AuditError as exc:  # a column or value the audit cannot read: name the folder it is in
        raise AuditError(exc.message, path=root / "tables") from None
