"""``ctcorpus verify``: check every file of a dataset version against its manifest, and the manifest's
own fields against what its files hold."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ctcorpus.errors import OutputError
from ctcorpus.outputs.dataset import (
    CARD,
    COUNTS,
    MANIFEST,
    config_sha256,
    count_tar_samples,
    manifest_geometry,
    read_manifest,
)
from ctcorpus.records import sha256_file
from ctcorpus.schemas import check_table, load_schema
from ctcorpus.version import __version__


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """One thing wrong with a dataset version."""

    path: str
    problem: str


@dataclass(frozen=True, slots=True)
class _TableFile:
    """What one Parquet file of a version tells about the manifest's own fields."""

    table: str
    split: str
    rows: int
    schema_version: str  # as its metadata marks it
    producers: frozenset[str] | None  # None: the table has no producer column
    patients: frozenset[str]
    studies: frozenset[str]


def _table_file(table: str, split: str, data: pa.Table) -> _TableFile:
    def distinct(column: str) -> frozenset[str] | None:
        return frozenset(data.column(column).unique().to_pylist()) if column in data.column_names else None

    return _TableFile(
        table, split, data.num_rows, (data.schema.metadata or {}).get(b"ctcorpus.schema_version", b"").decode(),
        distinct("producer"), distinct("patient_id") or frozenset(), distinct("study_id") or frozenset(),
    )


def _fields_found(tables: Sequence[_TableFile], shard_samples: Mapping[str, int], stated_splits: Iterable[str]) -> dict[str, Any]:
    """``schemas``, ``producers`` and ``splits`` as the build states them, recomputed from the files: schema
    versions from the Parquet metadata, producers and per-split volumes and reports from the tables, patients
    and studies from the ids the split's tables name (every study has its series rows there, a rejected one
    too), samples from the shards. A split stated with no file holds zeros."""
    producers: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, Counter[str]] = {split: Counter() for split in stated_splits}
    patients: dict[str, set[str]] = defaultdict(set)
    studies: dict[str, set[str]] = defaultdict(set)
    for t in tables:
        if t.producers is not None:
            producers[t.table] |= t.producers
        if t.split:
            patients[t.split] |= t.patients
            studies[t.split] |= t.studies
            counts.setdefault(t.split, Counter())
            if t.table in ("volumes", "reports"):
                counts[t.split][t.table] += t.rows
    for split, n in shard_samples.items():
        counts.setdefault(split, Counter())["samples"] += n
    for split, c in counts.items():
        c["patients"], c["studies"] = len(patients[split]), len(studies[split])
    return {
        "schemas": {t.table: int(t.schema_version) for t in tables},
        "producers": {name: sorted(found) for name, found in producers.items()},
        "splits": {split: {key: c[key] for key in COUNTS} for split, c in counts.items()},
    }


def _field_problems(field: str, stated: Any, found: Any) -> list[VerifyProblem]:
    """Every leaf of what verify recomputed (``found``) that the manifest states otherwise, named by its path
    (``splits.train.patients``)."""
    if isinstance(stated, dict) and isinstance(found, dict):
        return [p for key in sorted(set(stated) | set(found))
                for p in _field_problems(f"{field}.{key}", stated.get(key), found.get(key))]
    if stated == found:
        return []
    return [VerifyProblem(MANIFEST, f"{field}: the manifest says {stated!r}, recomputed it is {found!r} "
                                    "(the manifest was altered)")]


def _size_and_sha256(path: Path) -> tuple[int, str]:
    """A file's size and sha256; an I/O error reading it (a bad disk block, a stale network mount) is an
    :class:`OutputError` saying so, which verify names with the file and goes on, where it ended verify
    with a traceback and checked no file after it."""
    try:
        return path.stat().st_size, sha256_file(path)
    except OSError as exc:
        raise OutputError(f"cannot be read ({exc.strerror or exc}); copy it again from a good copy or rebuild",
                          path=path) from None


def verify_dataset(dataset: Path) -> list[VerifyProblem]:
    """Recompute checksums, sizes, counts and schemas; return every problem found (empty: all good).

    The manifest's own fields are checked too: ``config_sha256`` and ``geometry`` against its ``config``,
    and once every file matches its entry (a missing or changed file is named itself, not again as each
    count it changes), ``schemas``, ``producers`` and ``splits`` against what the files hold
    (:func:`_fields_found`), from the tables verify reads anyway.

    >>> verify_dataset(Path("out/dataset"))   # doctest: +SKIP
    []
    """
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    problems: list[VerifyProblem] = []
    if "config" in manifest:
        problems += _field_problems("config_sha256", manifest.get("config_sha256"), config_sha256(manifest["config"]))
    if isinstance(manifest.get("config"), dict) and isinstance(manifest["config"].get("ingest"), dict):
        problems += _field_problems("geometry", manifest.get("geometry"), manifest_geometry(manifest["config"]["ingest"]))
    # a 'schemas' edited into no mapping is named once, below, not as every table file being unreadable
    stated_schemas = manifest["schemas"] if isinstance(manifest.get("schemas"), dict) else {}
    listed = set()
    tables: list[_TableFile] = []
    shard_samples: Counter[str] = Counter()
    before_files = len(problems)
    for entry in manifest["files"]:
        rel = entry["path"]
        listed.add(rel)
        path = dataset / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # a tampered manifest: hash nothing outside the folder
            problems.append(VerifyProblem(rel, "a path outside the dataset folder (the manifest was altered); not read"))
            continue
        if not path.is_file():
            problems.append(VerifyProblem(rel, "missing"))
            continue
        try:
            size, sha256 = _size_and_sha256(path)
        except OutputError as exc:
            problems.append(VerifyProblem(rel, exc.message))
            continue
        if size != entry["bytes"]:
            problems.append(VerifyProblem(rel, f"size {size} != manifest {entry['bytes']}"))
        if sha256 != entry["sha256"]:
            problems.append(VerifyProblem(rel, "sha256 differs from the manifest (file changed or corrupt)"))
            continue
        try:
            if entry["kind"] == "parquet":
                table = pq.read_table(path, partitioning=None)
                found = _table_file(entry["table"], entry["split"], table)
                written, current = stated_schemas.get(entry["table"]), load_schema(entry["table"]).version
                if written is not None and written != current and str(written) == found.schema_version:
                    problems.append(VerifyProblem(rel, (
                        f"written with schema v{written} of {entry['table']!r}, this ctcorpus "
                        f"({__version__}) checks v{current}; verify it with the "
                        f"ctcorpus that wrote it ({manifest.get('pipeline_version', '?')}) or rebuild")))
                    continue
                check_table(entry["table"], table)
                tables.append(found)
                count = table.num_rows
            else:
                count = count_tar_samples(path)
                shard_samples[entry["split"]] += count
        except OutputError as exc:  # it does not match its schema
            problems.append(VerifyProblem(rel, exc.message))
            continue
        except Exception as exc:  # a corrupt file must be reported, not crash verify
            problems.append(VerifyProblem(rel, f"unreadable: {exc}"))
            continue
        if count != entry["count"]:
            problems.append(VerifyProblem(rel, f"{count} rows/samples, manifest says {entry['count']}"))
    if len(problems) == before_files:
        stated_splits = manifest["splits"] if isinstance(manifest.get("splits"), dict) else {}  # else named below
        found_fields = _fields_found(tables, shard_samples, stated_splits)
        problems += [p for field, value in found_fields.items() if field in manifest
                     for p in _field_problems(field, manifest[field], value)]
    card = dataset / CARD
    if "card_sha256" in manifest:  # a manifest written before the card had its checksum has none
        if not card.is_file():
            problems.append(VerifyProblem(CARD, "missing"))
        else:
            try:
                if _size_and_sha256(card)[1] != manifest["card_sha256"]:
                    problems.append(VerifyProblem(CARD, "sha256 differs from the manifest (file changed or corrupt)"))
            except OutputError as exc:
                problems.append(VerifyProblem(CARD, exc.message))
    folders = {parent.as_posix() for rel in listed for parent in PurePosixPath(rel).parents}
    for path in sorted(dataset.rglob("*")):
        rel = path.relative_to(dataset).as_posix()
        if path.is_file() and rel not in listed and rel not in (MANIFEST, CARD):
            problems.append(VerifyProblem(rel, "not listed in the manifest"))
        # the build writes no empty folder: an empty shards/<split> reads as a split without samples
        elif path.is_dir() and rel not in folders and not any(p.is_file() for p in path.rglob("*")):
            problems.append(VerifyProblem(rel, "a folder holding no file, not written by the build"))
    return problems
