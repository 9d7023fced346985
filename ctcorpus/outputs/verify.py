"""``ctcorpus verify``: check every file of a dataset version against its manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from ctcorpus.errors import OutputError
from ctcorpus.outputs.dataset import CARD, MANIFEST, count_tar_samples, read_manifest
from ctcorpus.records import sha256_file
from ctcorpus.schemas import check_table, load_schema
from ctcorpus.version import __version__


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """One thing wrong with a dataset version."""

    path: str
    problem: str


def verify_dataset(dataset: Path) -> list[VerifyProblem]:
    """Recompute checksums, sizes, counts and schemas; return every problem found (empty: all good).

    >>> verify_dataset(Path("out/dataset"))   # doctest: +SKIP
    []
    """
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    problems: list[VerifyProblem] = []
    listed = set()
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
        if path.stat().st_size != entry["bytes"]:
            problems.append(VerifyProblem(rel, f"size {path.stat().st_size} != manifest {entry['bytes']}"))
        if sha256_file(path) != entry["sha256"]:
            problems.append(VerifyProblem(rel, "sha256 differs from the manifest (file changed or corrupt)"))
            continue
        try:
            if entry["kind"] == "parquet":
                table = pq.read_table(path, partitioning=None)
                written, current = manifest.get("schemas", {}).get(entry["table"]), load_schema(entry["table"]).version
                if written is not None and written != current:
                    problems.append(VerifyProblem(rel, (
                        f"written with schema v{written} of {entry['table']!r}, this ctcorpus "
                        f"({__version__}) checks v{current}; verify it with the "
                        f"ctcorpus that wrote it ({manifest.get('pipeline_version', '?')}) or rebuild")))
                    continue
                check_table(entry["table"], table)
                count = table.num_rows
            else:
                count = count_tar_samples(path)
        except OutputError as exc:  # it does not match its schema
            problems.append(VerifyProblem(rel, exc.message))
            continue
        except Exception as exc:  # a corrupt file must be reported, not crash verify
            problems.append(VerifyProblem(rel, f"unreadable: {exc}"))
            continue
        if count != entry["count"]:
            problems.append(VerifyProblem(rel, f"{count} rows/samples, manifest says {entry['count']}"))
    card = dataset / CARD
    if "card_sha256" in manifest:  # a manifest written before the card had its checksum has none
        if not card.is_file():
            problems.append(VerifyProblem(CARD, "missing"))
        elif sha256_file(card) != manifest["card_sha256"]:
            problems.append(VerifyProblem(CARD, "sha256 differs from the manifest (file changed or corrupt)"))
    folders = {parent.as_posix() for rel in listed for parent in PurePosixPath(rel).parents}
    for path in sorted(dataset.rglob("*")):
        rel = path.relative_to(dataset).as_posix()
        if path.is_file() and rel not in listed and rel not in (MANIFEST, CARD):
            problems.append(VerifyProblem(rel, "not listed in the manifest"))
        # the build writes no empty folder: an empty shards/<split> reads as a split without samples
        elif path.is_dir() and rel not in folders and not any(p.is_file() for p in path.rglob("*")):
            problems.append(VerifyProblem(rel, "a folder holding no file, not written by the build"))
    return problems
