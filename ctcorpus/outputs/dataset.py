"""Build one dataset version: split-partitioned Parquet tables, WebDataset shards, manifest, card.

The build is a pure function of the stored stage results and the output config: the same inputs
give byte-identical files and manifest. It is written into a temporary folder and renamed into
place, so readers never see a half-built version.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import tarfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import webdataset as wds

from ctcorpus.config.outputs import OutputConfig
from ctcorpus.errors import OutputError
from ctcorpus.outputs.splits import assign_split, linked_patients
from ctcorpus.outputs.store import atomic_write_bytes, exclusive_atomic_dir, moved_aside, write_parquet
from ctcorpus.records import sha256_file
from ctcorpus.schemas import as_schema, load_schema, table_from_rows
from ctcorpus.version import __version__

log = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST = "manifest.json"
CARD = "dataset_card.md"
SAMPLE_FILES = ("hu.npy.zst", "mask.npy.zst", "report.json", "snippets.json")

#: What the manifest counts per split.
COUNTS = ("patients", "reports", "samples", "studies", "volumes")

#: Tables that are not bound to one patient and so are not partitioned by split.
UNSPLIT_TABLES = frozenset({"instances", "quarantine"})

#: Key of the hash that places shard boundaries; changing it moves every boundary.
_SHARD_KEY = b"ctcorpus-shard-v1"


@dataclass(frozen=True, slots=True)
class StoredSample:
    """One volume's sample files in the work store, plus its metadata (without split)."""

    volume_id: str
    files: Mapping[str, Path]  # SAMPLE_FILES -> path
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BuildUnit:
    """The stored results of one study (or export-level rows with ``patient_id == ''``)."""

    unit_id: str
    patient_id: str
    tables: Mapping[str, pa.Table]
    samples: tuple[StoredSample, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionChanges:
    """What a build changed of the version it replaced, by the files' sha256 (what a sync or dedupe by
    checksum moves; a shard renumbered but of the same bytes is kept): a scheduled build over an export
    with nothing new says so, where it looked like any other build."""

    kept: int  # files whose bytes the replaced version held
    new: int  # files it did not hold
    dropped: int  # its files that the new version no longer holds
    unchanged: bool  # the manifest is byte-identical: the version is the one it replaced

    def __str__(self) -> str:
        """As the build's last log line and ``ctcorpus build``'s summary say it."""
        if self.unchanged:
            return "unchanged, byte-identical to the version it replaced"
        return f"kept={self.kept} new={self.new} dropped={self.dropped} (files by sha256, of the version it replaced)"


@dataclass(frozen=True, slots=True)
class BuildResult:
    """Where a dataset version went, what it holds and what it changed (None: it replaced no version)."""

    path: Path
    manifest: dict[str, Any]
    splits: Mapping[str, str] = field(default_factory=dict)  # patient -> split
    changes: VersionChanges | None = None


def _logged(items: Sequence[T], what: str) -> Iterator[T]:
    """Yield ``items``, logging ``<what> done=<n>/<total>`` (INFO) at each tenth of them: a large build
    wrote its tables and shards for many minutes after one line. Logged only, so no file changes."""
    step = max(1, math.ceil(len(items) / 10))
    for count, item in enumerate(items, 1):
        yield item
        if count % step == 0 or count == len(items):
            log.info("%s done=%d/%d", what, count, len(items))


def _volume_ids(unit: BuildUnit) -> set[str]:
    """The volumes of a study: its samples' and its ``volumes`` rows' (those without a report too)."""
    rows = unit.tables["volumes"].column("volume_id").to_pylist() if "volumes" in unit.tables else []
    return {s.volume_id for s in unit.samples} | set(rows)


def _split_of_units(units: Sequence[BuildUnit], config: OutputConfig) -> dict[str, str]:
    """Patient -> split: patients whose studies hold one volume are one person (:func:`linked_patients`)
    and take one split, where the volume was in the shards of two splits under one key, a leak the audit
    cannot see (it pairs volumes of different ids)."""
    patients = sorted({u.patient_id for u in units if u.patient_id})
    holders: dict[str, set[str]] = defaultdict(set)
    for unit in units:
        if unit.patient_id:
            for volume_id in _volume_ids(unit):
                holders[volume_id].add(unit.patient_id)
    person = linked_patients(patients, holders.values())
    if linked := sorted(p for p in patients if person[p] != p):
        log.warning("patients whose studies hold the same volume are one person, in one split: %s",
                    ", ".join(f"{p}={person[p]}" for p in linked))
    return {p: assign_split(person[p], config.split_fractions, config.split_key).value for p in patients}


def _shard_samples(units: Sequence[BuildUnit], splits: Mapping[str, str]) -> dict[str, list[StoredSample]]:
    """Split -> its samples in volume-id order, each volume once (that of the first study by unit id): a
    volume two studies hold was written twice into the shards under one key, which readers merge or
    repeat, and verify counted once."""
    by_split: dict[str, dict[str, StoredSample]] = defaultdict(dict)
    for unit in units:
        for sample in unit.samples:
            by_split[splits[unit.patient_id]].setdefault(sample.volume_id, sample)
    return {split: [found[v] for v in sorted(found)] for split, found in sorted(by_split.items())}


def _write_tables(
    units: Sequence[BuildUnit], splits: Mapping[str, str], out: Path, config: OutputConfig
) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[pa.Table]] = defaultdict(list)
    for unit in units:
        for name, table in unit.tables.items():
            part = "" if name in UNSPLIT_TABLES or not unit.patient_id else splits[unit.patient_id]
            grouped[(name, part)].append(table)
    entries = []
    for (name, part), tables in _logged(sorted(grouped.items()), "writing tables"):
        table = as_schema(name, pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0])
        rel = Path("tables") / name / (f"split={part}" if part else "") / "part-00000.parquet"
        write_parquet(table, out / rel, config.parquet_row_group_rows)
        entries.append({"path": rel.as_posix(), "kind": "parquet", "table": name, "split": part, "count": table.num_rows})
    return entries


def _tar_member_bytes(sizes: Iterable[int]) -> int:
    """What members of these sizes take in a tar: a 512-byte header each, the data padded to 512-byte blocks."""
    return sum(tarfile.BLOCKSIZE * (1 + -(-n // tarfile.BLOCKSIZE)) for n in sizes)


def _tar_file_bytes(member_bytes: int) -> int:
    """The size of a tar file holding ``member_bytes`` of members: tarfile ends it with two zero blocks and
    pads it to a whole record (10 KiB). The cut counts these too, so no shard outgrows ``shard_max_bytes``."""
    return -(-(member_bytes + 2 * tarfile.BLOCKSIZE) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _keyed_unit(key: bytes, volume_id: str) -> float:
    """HMAC-SHA256(key, volume_id) as a number in [0, 1): a draw that only the sample itself decides."""
    return int.from_bytes(hmac.new(key, volume_id.encode(), hashlib.sha256).digest()[:8], "big") / 2**64


def _meta_json(sample: StoredSample, split: str) -> bytes:
    return json.dumps(dict(sample.meta, split=split), sort_keys=True, separators=(",", ":")).encode()


def _shard_groups(samples: Sequence[tuple[StoredSample, int]], max_bytes: int) -> list[list[StoredSample]]:
    """Cut (sample, tar bytes) pairs, in volume-id order, into shards at content-defined boundaries.

    A shard ends after a sample once the shard holds at least a quarter of ``max_bytes`` and the sample's
    keyed hash falls under its size over half of ``max_bytes`` (a boundary every ~``max_bytes / 2`` bytes
    past that minimum, whatever the samples weigh), or before a sample that would make the tar file exceed
    ``max_bytes``. A boundary is decided by the sample's own hash and the bytes since the last boundary, not
    by its position in the split, so samples added to (or removed from) the export change the shards they
    fall into and, until the cuts meet the old ones again, the next one or two: the others stay
    byte-identical (a position-based cut moved every later boundary). Shards hold about half of
    ``max_bytes`` on average (bench/outputs.py), never more, except that a sample bigger than ``max_bytes``
    is a shard of its own.
    """
    low, gap = max_bytes // 4, max_bytes / 2
    groups: list[list[StoredSample]] = [[]]
    size = 0
    for sample, nbytes in samples:
        if groups[-1] and _tar_file_bytes(size + nbytes) > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(sample)
        size += nbytes
        if _tar_file_bytes(size) >= low and _keyed_unit(_SHARD_KEY, sample.volume_id) < nbytes / gap:
            groups.append([])
            size = 0
    return [group for group in groups if group]


def _shard_order(group: list[StoredSample], config: OutputConfig) -> list[StoredSample]:
    """The samples of one shard in the order written: by volume id, or by a hash keyed with
    ``shard_shuffle_seed``, which mixes them inside the shard and leaves the shard's members alone."""
    if config.shard_shuffle_seed is None:
        return group
    seed = str(config.shard_shuffle_seed).encode()
    return sorted(group, key=lambda s: (_keyed_unit(seed, s.volume_id), s.volume_id))


def _write_shards(shard_samples: Mapping[str, Sequence[StoredSample]], out: Path, config: OutputConfig) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for split, samples in shard_samples.items():
        shard_dir = out / "shards" / split
        shard_dir.mkdir(parents=True, exist_ok=True)
        sized = [
            (s, _tar_member_bytes([*(Path(s.files[name]).stat().st_size for name in SAMPLE_FILES), len(_meta_json(s, split))]))
            for s in samples
        ]
        for index, group in enumerate(_logged(_shard_groups(sized, config.shard_max_bytes), f"writing shards split={split}")):
            path = shard_dir / f"shard-{index:06d}.tar"
            writer = wds.TarWriter(str(path), mtime=0, user="ctcorpus", group="ctcorpus", encoder=False)
            for sample in _shard_order(group, config):
                record = {name: Path(sample.files[name]).read_bytes() for name in SAMPLE_FILES}
                writer.write({"__key__": sample.volume_id, **record, "meta.json": _meta_json(sample, split)})
            writer.close()
            entries.append({"path": path.relative_to(out).as_posix(), "kind": "shard", "table": "webdataset",
                            "split": split, "count": len(group)})
    return entries


def _changes(old: Path, files: Sequence[Mapping[str, Any]], manifest: bytes) -> VersionChanges | None:
    """What the version with ``files`` and ``manifest`` changes of the one at ``old`` (None: none there, or
    one whose manifest does not read, which verify names)."""
    try:
        before = read_manifest(old)
    except OutputError:
        return None
    had, has = Counter(f["sha256"] for f in before["files"]), Counter(f["sha256"] for f in files)
    return VersionChanges(kept=(has & had).total(), new=(has - had).total(), dropped=(had - has).total(),
                          unchanged=(old / MANIFEST).read_bytes() == manifest)


def config_sha256(config: Mapping[str, Any]) -> str:
    """The manifest's ``config_sha256``: of the config as sorted JSON, so verify can recompute it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def manifest_geometry(ingest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``geometry``: what the ``ingest`` section of the config the volumes were made with
    says of their grid, so verify can recompute it (a spacing edited by hand misled every reader)."""
    return {"orientation": ingest.get("orientation"), "spacing_mm": ingest.get("target_spacing_mm"),
            "hu_clip": ingest.get("hu_clip"), "array_axes": "zyx"}


def _producers(units: Sequence[BuildUnit]) -> dict[str, list[str]]:
    """Table -> the producers its rows name (the report rules' digest, the segmenter backend, ...):
    what tells two versions made by different rules apart without reading their tables (a re-run
    labeler that disagrees with itself, CT-CLIP #55)."""
    found: dict[str, set[str]] = defaultdict(set)
    for unit in units:
        for name, table in unit.tables.items():
            if "producer" in table.column_names:
                found[name].update(table.column("producer").unique().to_pylist())
    return {name: sorted(found[name]) for name in sorted(found)}


def _split_counts(units: Sequence[BuildUnit], splits: Mapping[str, str], shard_samples: Mapping[str, Sequence[StoredSample]],
                  config: OutputConfig) -> dict[str, dict[str, int]]:
    """Counts per split, zeros for a configured split no patient fell into (a small cohort's test split
    is stated empty, not left out); samples as the shards hold them (the volumes with a report)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for unit in units:
        if not unit.patient_id:
            continue
        split = splits[unit.patient_id]
        counts[split]["studies"] += 1
        counts[split]["volumes"] += unit.tables["volumes"].num_rows if "volumes" in unit.tables else 0
        counts[split]["reports"] += unit.tables["reports"].num_rows if "reports" in unit.tables else 0
    for split in splits.values():
        counts[split]["patients"] += 1
    for split, samples in shard_samples.items():
        counts[split]["samples"] = len(samples)
    configured = {name for name, fraction in config.split_fractions.items() if fraction > 0}
    return {s: {k: counts[s][k] for k in COUNTS} for s in sorted(configured | set(counts))}


def _not_replaceable(out: Path) -> str | None:
    """Why a build must not replace ``out`` whole (None: it may, a dataset version or an empty or new folder).

    The build moves ``out`` aside and deletes it: a folder of other files went with it (``--out out``, the
    work store's folder); a file, or a link (``latest`` -> ``v3``), could not be deleted and was left behind
    hidden as a killed build's leftover, the link's version not rebuilt; the working folder, or one holding it
    (``--out .`` in an empty folder), left the process in a deleted folder (``.`` has no name: a ValueError).
    """
    if Path.cwd().is_relative_to(Path(os.path.abspath(out))):
        return "is the working folder or holds it, which a build would replace whole"
    if out.is_symlink():
        return f"is a link to {os.readlink(out)}, which a build would replace, not the version it names"
    if out.exists() and not out.is_dir():
        return "is a file, not a dataset folder, and a build replaces it whole"
    if out.is_dir() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        return "holds files but no manifest.json, so it is no dataset version, and a build replaces its folder whole"
    return None


def build_dataset(
    units: Iterable[BuildUnit],
    out: Path,
    config: OutputConfig,
    *,
    run_config: Mapping[str, Any],
    geometry: Mapping[str, Any],
) -> BuildResult:
    """Write a dataset version to ``out`` (replacing an older build atomically).

    One build at a time may write ``out``; it first removes what a killed build of ``out`` left.
    The version is the folder's name: the manifest and card name what the user built. A folder
    that holds files but no manifest, a file or a link is no dataset version and is not replaced
    (:func:`_not_replaceable`).

    Parameters
    ----------
    units:
        Stored per-study results (order does not matter; the output is sorted).
    config:
        Split fractions and key, shard size, Parquet layout.
    run_config:
        The full corpus config (recorded in the manifest with its hash).
    geometry:
        Orientation, spacing and HU range of the volumes, stated in the manifest and card.
    """
    if reason := _not_replaceable(out):
        raise OutputError(f"{reason}; build into a new or empty folder, e.g. <output_dir>/dataset/<version>", path=out)
    ordered = sorted(units, key=lambda u: u.unit_id)
    splits = _split_of_units(ordered, config)
    shard_samples = _shard_samples(ordered, splits)
    with exclusive_atomic_dir(out) as tmp:
        entries = _write_tables(ordered, splits, tmp, config) + _write_shards(shard_samples, tmp, config)
        for entry in _logged(entries, "hashing files"):
            path = tmp / entry["path"]
            entry["sha256"] = sha256_file(path)
            entry["bytes"] = path.stat().st_size
        files = table_from_rows("manifest", sorted(entries, key=lambda e: e["path"])).to_pylist()
        manifest = {
            "dataset_version": out.name,
            "pipeline_version": __version__,
            "config": run_config,
            "config_sha256": config_sha256(run_config),
            "geometry": dict(geometry),
            "schemas": {name: load_schema(name).version for name in sorted({e["table"] for e in entries} - {"webdataset"})},
            "manifest_schema_version": load_schema("manifest").version,
            "splits": _split_counts(ordered, splits, shard_samples, config),
            "producers": _producers(ordered),
            "files": files,
        }
        card = render_card(manifest).encode()
        manifest["card_sha256"] = hashlib.sha256(card).hexdigest()  # the card is no table or shard: not in 'files'
        manifest_bytes = (json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode()
        changes = _changes(out, files, manifest_bytes)
        atomic_write_bytes(tmp / MANIFEST, manifest_bytes)
        atomic_write_bytes(tmp / CARD, card)
    log.info("built dataset version=%s path=%s files=%d%s", out.name, out, len(files), "" if changes is None else f": {changes}")
    return BuildResult(path=out, manifest=manifest, splits=splits, changes=changes)


def read_manifest(dataset: Path) -> dict[str, Any]:
    """Load ``manifest.json`` of a dataset version.

    A missing, unreadable or truncated manifest, or one whose file list does not match the manifest
    schema, is an :class:`OutputError` naming it: verify reports what is wrong instead of crashing.
    """
    path = Path(dataset) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(moved_aside(Path(dataset)) or "no manifest.json: not a ctcorpus dataset folder",
                          path=dataset) from None
    except OSError as exc:
        raise OutputError(f"cannot be read ({exc.strerror or exc})", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"not valid JSON ({exc}); restore it or rebuild the dataset", path=path) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise OutputError("no 'files' list: not a ctcorpus manifest; restore it or rebuild the dataset", path=path)
    try:
        table_from_rows("manifest", manifest["files"])
    except (OutputError, pa.ArrowException) as exc:
        reason = exc.message if isinstance(exc, OutputError) else str(exc)
        raise OutputError(f"'files' does not match the manifest schema ({reason})", path=path) from None
    return manifest


def render_card(manifest: Mapping[str, Any]) -> str:
    """A Markdown dataset card generated from the manifest (no hand-written numbers)."""
    geo = manifest["geometry"]
    lines = [
        f"# Dataset card: {manifest['dataset_version']}",
        "",
        f"Built by ctcorpus {manifest['pipeline_version']}; config sha256 `{manifest['config_sha256'][:16]}`.",
        "",
        "## Volumes",
        f"- Orientation: **{geo.get('orientation')}**; spacing (x, y, z): **{geo.get('spacing_mm')} mm**; "
        f"HU clipped to **{geo.get('hu_clip')}**, stored as int16 HU (rescale applied once).",
        "- Array layout: (z, y, x), zstd-compressed `.npy` in WebDataset shards; masks are uint8 label maps.",
        "",
        "## Splits (patient-level, keyed hash)",
        "",
        "| split | patients | studies | volumes | shard samples | reports |",
        "|---|---|---|---|---|---|",
    ]
    for split, c in manifest["splits"].items():
        lines.append(
            f"| {split} | {c.get('patients', 0)} | {c.get('studies', 0)} | {c.get('volumes', 0)} | {c.get('samples', 0)} "
            f"| {c.get('reports', 0)} |"
        )
    lines += ["", "## Tables", "", "| table | schema version | rows |", "|---|---|---|"]
    rows: Counter[str] = Counter()
    for f in manifest["files"]:
        if f["kind"] == "parquet":
            rows[f["table"]] += f["count"]
    for name, version in manifest["schemas"].items():
        lines.append(f"| {name} | {version} | {rows[name]} |")
    lines += ["", "## Producers (what made each table's rows)", "", "| table | producers |", "|---|---|"]
    for name, producers in manifest.get("producers", {}).items():
        lines.append(f"| {name} | {', '.join(f'`{p}`' for p in producers)} |")
    shards = [f for f in manifest["files"] if f["kind"] == "shard"]
    lines += [
        "",
        "## Shards",
        f"{len(shards)} WebDataset shards, {sum(f['count'] for f in shards)} samples, "
        f"{sum(f['bytes'] for f in shards) / 1e6:.1f} MB. Every file's sha256 is in `manifest.json`; "
        "check them with `ctcorpus verify`.",
        "",
    ]
    return "\n".join(lines)


def count_tar_samples(path: Path) -> int:
    """Number of distinct sample keys in a WebDataset tar."""
    keys = set()
    with tarfile.open(path) as tar:
        for member in tar:
            keys.add(member.name.split(".", 1)[0])
    return len(keys)


__all__ = [
    "BuildResult",
    "BuildUnit",
    "StoredSample",
    "VersionChanges",
    "build_dataset",
    "config_sha256",
    "count_tar_samples",
    "manifest_geometry",
    "read_manifest",
    "render_card",
]
