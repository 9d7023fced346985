"""Corpus outputs: deterministic builds, splits, verify, readers without ctcorpus code."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from typer.testing import CliRunner

from ctcorpus.cli import app
from ctcorpus.config.ingest import IngestConfig
from ctcorpus.config.outputs import OutputConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import OutputError
from ctcorpus.outputs import (
    BuildUnit,
    StoredSample,
    VersionChanges,
    WorkStore,
    assign_split,
    build_dataset,
    decode_array,
    encode_array,
    read_manifest,
    verify_dataset,
)
from ctcorpus.outputs.dataset import manifest_geometry
from ctcorpus.outputs.store import exclusive_atomic_dir, remove_leftovers
from ctcorpus.records import QuarantineEntry, sha256_file
from ctcorpus.schemas import load_schema, table_from_rows

PROV = {"pipeline_version": "test", "source_sha256": "0" * 64, "producer": "test-1"}


def _unit(tmp: Path, i: int, slices: int = 4, patient: int | None = None, volume: int | None = None) -> BuildUnit:
    """Study ``i`` of patient ``i`` (or ``patient``) with one sample, of volume ``i`` (or ``volume``)."""
    patient_id, volume_id = f"pat-{i if patient is None else patient:03d}", f"vol-{i if volume is None else volume:03d}"
    rng = np.random.default_rng(i)
    files = {}
    base = tmp / "store" / f"u{i}"
    base.mkdir(parents=True)
    hu = rng.integers(-1000, 1000, (slices, 8, 8)).astype(np.int16)
    for name, data in {
        "hu.npy.zst": encode_array(hu),
        "mask.npy.zst": encode_array((hu > 0).astype(np.uint8)),
        "report.json": json.dumps({"text": f"report {i}"}).encode(),
        "snippets.json": b"[]",
    }.items():
        (base / name).write_bytes(data)
        files[name] = base / name
    quarantine = table_from_rows(
        "quarantine",
        [QuarantineEntry(stage="ingest", path=f"f{i}", reason=QuarantineReason.LOCALIZER, message="scout")],
        **PROV,
    )
    row = {"volume_id": volume_id, "study_id": f"stu-{i:03d}", "patient_id": patient_id, "report_id": f"rep-{i:03d}",
           "in_shards": True, "hu_sha256": "0" * 64, "fingerprint": [0.0], "fingerprint_version": 1, "shape_zyx": [slices, 8, 8],
           "mask_source": "none", "n_snippets": 0, "patient_key": f"key-{i:03d}"}
    sample = StoredSample(volume_id=volume_id, files=files, meta={"volume_id": volume_id})
    tables = {"quarantine": quarantine, "samples": table_from_rows("samples", [row], **PROV)}
    return BuildUnit(unit_id=f"stu-{i:03d}", patient_id=patient_id, tables=tables, samples=(sample,))


def _build(tmp: Path, units, name="ds", **cfg):
    config = OutputConfig(shard_max_bytes=cfg.pop("shard_max_bytes", 2000), **cfg)
    ingest = IngestConfig().model_dump(mode="json")
    return build_dataset(units, tmp / name, config, run_config={"ingest": ingest, "outputs": config.model_dump()},
                         geometry=manifest_geometry(ingest))


def test_two_builds_are_byte_identical(tmp_path):
    units = [_unit(tmp_path, i) for i in range(12)]
    a = _build(tmp_path / "a", units)
    b = _build(tmp_path / "b", list(reversed(units)))
    assert (a.path / "manifest.json").read_bytes() == (b.path / "manifest.json").read_bytes()
    shards = [f for f in a.manifest["files"] if f["kind"] == "shard"]
    assert len(shards) > 3  # the small shard size forces several shards
    assert sum(f["count"] for f in shards) == 12
    assert verify_dataset(a.path) == []


def test_a_build_logs_its_writing_in_counts_and_what_it_changed_of_the_version_it_replaced(tmp_path, caplog):
    # a scheduled build over an export with nothing new looked like any other, and its writing was one silent phase
    units = [_unit(tmp_path, i) for i in range(14)]
    caplog.set_level(logging.INFO, logger="ctcorpus.outputs")
    first = _build(tmp_path, units[:12])
    files = first.manifest["files"]
    logged = [r.getMessage() for r in caplog.records]
    tables = sum(f["kind"] == "parquet" for f in files)
    shards = Counter(f["split"] for f in files if f["kind"] == "shard")
    assert len(shards) > 1 and max(shards.values()) > 1
    assert {f"writing tables done={tables}/{tables}", f"hashing files done={len(files)}/{len(files)}",
            *(f"writing shards split={split} done={n}/{n}" for split, n in shards.items())} <= set(logged)
    assert first.changes is None and logged[-1].endswith(f"files={len(files)}")
    caplog.clear()
    again = _build(tmp_path, units[:12])
    assert again.changes == VersionChanges(kept=len(files), new=0, dropped=0, unchanged=True)
    assert caplog.records[-1].getMessage().endswith("unchanged, byte-identical to the version it replaced")
    grown = _build(tmp_path, units)  # two patients more: by sha256, what a sync moves
    had, has = Counter(f["sha256"] for f in files), Counter(f["sha256"] for f in grown.manifest["files"])
    assert grown.changes == VersionChanges(kept=(has & had).total(), new=(has - had).total(),
                                           dropped=(had - has).total(), unchanged=False)
    assert grown.changes.kept > 0 and grown.changes.new > 0


def test_rebuild_replaces_atomically_and_stays_identical(tmp_path):
    units = [_unit(tmp_path, i) for i in range(5)]
    first = (_build(tmp_path, units).path / "manifest.json").read_bytes()
    second = (_build(tmp_path, units).path / "manifest.json").read_bytes()
    assert first == second
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".tmp-")]


def _leftover(parent: Path, name: str, old: bool = False) -> Path:
    """A folder as a build killed inside ``atomic_dir`` leaves it (with a partial shard)."""
    path = parent / f".tmp-{'old-' if old else ''}{uuid.uuid4().hex}-{name}"
    (path / "shards" / "train").mkdir(parents=True)
    (path / "shards" / "train" / "shard-000000.tar").write_bytes(b"partial")
    return path


def test_build_removes_what_a_killed_build_of_it_left_and_nothing_else(tmp_path):
    units = [_unit(tmp_path, i) for i in range(3)]
    _build(tmp_path, units)
    stale = [_leftover(tmp_path, "ds"), _leftover(tmp_path, "ds", old=True)]
    others = [_leftover(tmp_path, "ds2"), tmp_path / ".tmp-notes-ds", tmp_path / "ds-notes.txt"]
    others[1].mkdir()
    others[2].write_text("kept")
    result = _build(tmp_path, units)
    assert not [p for p in stale if p.exists()]
    assert all(p.exists() for p in others)
    assert verify_dataset(result.path) == []


def test_a_version_moved_aside_by_a_killed_build_is_put_back(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)])
    old = tmp_path / f".tmp-old-{uuid.uuid4().hex}-ds"
    result.path.rename(old)  # killed between atomic_dir's two renames: the new one is still a temp
    new = _leftover(tmp_path, "ds")
    with pytest.raises(OutputError, match=f"moving this version aside to {old}.*ctcorpus build --out"):
        verify_dataset(result.path)  # before the rebuild that puts it back, readers say where it is
    assert remove_leftovers(result.path) == [new]
    assert not old.exists() and not new.exists() and verify_dataset(result.path) == []


def test_a_result_is_on_disk_before_its_folder_is_renamed_into_place(tmp_path, monkeypatch):
    # a rename may reach the disk before the data it names: a crash then left a complete-looking
    # result of empty files, which the work store trusts, or a dataset version so, the old one deleted
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", str(src))), replace(src, dst)))
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)])
    renamed = next(i for i, (kind, path) in enumerate(events) if kind == "replace" and Path(path).name.endswith("-ds"))
    tmp = str(Path(events[renamed][1]).resolve())  # as /proc names it: through no symlink
    synced = {Path(path).relative_to(tmp).as_posix() for kind, path in events[:renamed] if kind == "fsync" and path.startswith(tmp)}
    written = {p.relative_to(result.path).as_posix() for p in result.path.rglob("*")}
    assert written and written | {"."} <= synced


def test_a_second_build_of_a_version_fails_and_leaves_the_first_ones_temp_alone(tmp_path):
    units = [_unit(tmp_path, i) for i in range(3)]
    with exclusive_atomic_dir(tmp_path / "ds") as running:
        (running / "half-written").write_text("x")
        with pytest.raises(OutputError, match="another process is writing it"):
            _build(tmp_path, units)
        assert (running / "half-written").exists()
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["half-written"]  # the first one's output, untouched


def test_a_second_ingest_run_on_a_work_store_fails_and_leaves_the_first_ones_results_in_progress(tmp_path):
    store = WorkStore(tmp_path / "work")
    with store.exclusive(), store.writing("ingest", "ab" * 32) as running:
        (running / "hu.npy.zst").write_bytes(b"x")
        with pytest.raises(OutputError, match="another process is writing it"), store.exclusive():
            store.clean()  # what a run does first: it took the live run's result for a killed run's leftover
        assert (running / "hu.npy.zst").exists()
    assert store.has("ingest", "ab" * 32)


def test_a_build_does_not_replace_a_folder_that_is_no_dataset_version(tmp_path):
    # `build --out out`, the folder of the work store: the build replaced it whole, work store and all
    kept = tmp_path / "out" / "work" / "current_run.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    units = [_unit(tmp_path, i) for i in range(2)]
    with pytest.raises(OutputError, match="no manifest.json") as error:
        _build(tmp_path, units, "out")
    assert str(tmp_path / "out") in str(error.value) and kept.read_text() == "{}"
    (tmp_path / "empty").mkdir()
    assert verify_dataset(_build(tmp_path, units, "empty").path) == []  # an empty folder, or a version, is built into


def test_a_build_leaves_a_file_or_a_link_where_its_version_should_go_as_it_is(tmp_path):
    # the build renamed the file or link aside to delete it, failed to, and left it hidden as a leftover
    units = [_unit(tmp_path, i) for i in range(2)]
    (tmp_path / "notes.txt").write_text("kept")
    version = _build(tmp_path, units, "v3").path
    (tmp_path / "latest").symlink_to("v3")
    for name, reason in [("notes.txt", "is a file"), ("latest", "is a link to v3")]:
        with pytest.raises(OutputError, match=reason) as error:
            _build(tmp_path, units, name)
        assert str(tmp_path / name) in str(error.value)
    assert (tmp_path / "notes.txt").read_text() == "kept" and (tmp_path / "latest").resolve() == version
    assert verify_dataset(version) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_build_refuses_the_working_folder_and_those_holding_it(tmp_path, monkeypatch):
    # "--out ." in an empty folder raised a bare ValueError ("." has no name); a build would delete the folder the
    # process works in
    units = [_unit(tmp_path, i) for i in range(2)]
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    for out in (Path("."), Path(".."), empty):
        with pytest.raises(OutputError, match="is the working folder or holds it"):
            build_dataset(units, out, OutputConfig(), run_config={}, geometry={})
    assert empty.is_dir() and not any(empty.iterdir())


def test_a_build_records_the_version_of_the_folder_it_writes(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)], "v2")  # the config's dataset_version is v1
    assert read_manifest(result.path)["dataset_version"] == "v2"
    assert (result.path / "dataset_card.md").read_text().startswith("# Dataset card: v2\n")


def test_a_configured_split_no_patient_fell_into_is_stated_empty(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, 1)], split_fractions={"train": 0.5, "test": 0.5})
    fell = assign_split("pat-001", {"train": 0.5, "test": 0.5}, OutputConfig().split_key).value
    empty = ({"train", "test"} - {fell}).pop()
    assert set(result.manifest["splits"]) == {"train", "test"}
    assert result.manifest["splits"][empty] == {"patients": 0, "reports": 0, "samples": 0, "studies": 0, "volumes": 0}
    assert f"| {empty} | 0 | 0 | 0 | 0 | 0 |" in (result.path / "dataset_card.md").read_text()


def test_splits_are_stable_when_patients_are_added():
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2}
    before = {f"pat-{i}": assign_split(f"pat-{i}", fractions, "k") for i in range(200)}
    after = {f"pat-{i}": assign_split(f"pat-{i}", fractions, "k") for i in range(400)}
    assert all(after[p] == s for p, s in before.items())
    shares = pd.Series([s.value for s in after.values()]).value_counts(normalize=True)
    assert abs(shares["train"] - 0.6) < 0.08 and abs(shares["test"] - 0.2) < 0.08
    assert {assign_split("pat-1", fractions, k) for k in map(str, range(30))} != {before["pat-1"]}


def test_patients_whose_studies_hold_one_volume_are_one_person_in_one_split_with_the_volume_in_one_shard(tmp_path, caplog):
    # the same images exported under two patient ids (before and after an id correction) were two patients:
    # the volume was in the shards of two splits, a leak the audit does not see, or twice under one key
    config = OutputConfig()
    own = {i: assign_split(f"pat-{i:03d}", config.split_fractions, config.split_key).value for i in range(40)}
    other = next(i for i in own if own[i] != own[0])
    units = [_unit(tmp_path, i) for i in range(1, 10) if i != other]
    units += [_unit(tmp_path, 0), _unit(tmp_path, other, volume=0), _unit(tmp_path, 50, patient=0, volume=0)]
    result = _build(tmp_path, units)
    assert result.splits["pat-000"] == result.splits[f"pat-{other:03d}"] == own[0]
    assert all(result.splits[u.patient_id] == own[int(u.patient_id[4:])] for u in units if u.patient_id != f"pat-{other:03d}")
    keys = Counter(k for f in _shards(result) for k in _keys(result.path / f["path"]))
    assert keys["vol-000"] == 1 and set(keys.values()) == {1}
    assert sum(c["samples"] for c in result.manifest["splits"].values()) == len(keys) == len(units) - 2
    assert verify_dataset(result.path) == []
    assert f"pat-{other:03d}=pat-000" in caplog.text


def test_verify_names_a_flipped_byte_and_a_missing_parquet(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(6)])
    shard = next(f for f in result.manifest["files"] if f["kind"] == "shard")
    table = next(f for f in result.manifest["files"] if f["kind"] == "parquet")
    path = result.path / shard["path"]
    data = bytearray(path.read_bytes())
    data[700] ^= 0xFF
    path.write_bytes(bytes(data))
    (result.path / table["path"]).unlink()
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert "sha256" in problems[shard["path"]]
    assert problems[table["path"]] == "missing"
    assert len(problems) == 2


def test_verify_names_a_file_it_cannot_read_and_checks_the_files_after_it(tmp_path, monkeypatch):
    # an I/O error (a bad disk block, a stale network mount) ended verify with a traceback, no file after it checked
    import ctcorpus.outputs.verify as verify_module

    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(6)])
    shard = next(f for f in result.manifest["files"] if f["kind"] == "shard")
    table = result.manifest["files"][-1]  # files are in path order: the shards come first
    (result.path / table["path"]).write_bytes(b"changed")
    bad = {result.path / shard["path"], result.path / "dataset_card.md"}

    def failing_disk(path, *args):
        if Path(path) in bad:
            raise OSError(5, "Input/output error")
        return sha256_file(path, *args)

    monkeypatch.setattr(verify_module, "sha256_file", failing_disk)
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert problems[shard["path"]].startswith("cannot be read (Input/output error)")
    assert problems["dataset_card.md"].startswith("cannot be read (Input/output error)")
    assert "sha256 differs" in problems[table["path"]] and len(problems) == 3


@pytest.mark.parametrize("change", ["edit", "delete"])
def test_verify_names_a_changed_or_missing_dataset_card(tmp_path, change):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)])
    card = result.path / "dataset_card.md"
    if change == "edit":
        card.write_text(card.read_text().replace("| train | ", "| train | 9"))  # a count edited by hand
    else:
        card.unlink()
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert set(problems) == {"dataset_card.md"}
    assert ("sha256 differs" if change == "edit" else "missing") in problems["dataset_card.md"]


def _loose(table: pa.Table, version: str, nullable: bool = True) -> pa.Table:
    """``table`` as a stored result written under another schema file: nullable columns, another version."""
    schema = pa.schema([f.with_nullable(nullable or f.nullable) for f in table.schema],
                       metadata={**table.schema.metadata, b"ctcorpus.schema_version": version.encode()})
    return pa.Table.from_arrays(table.columns, schema=schema)


def test_a_built_table_has_its_schema_exactly_whatever_schema_file_its_stored_results_had(tmp_path):
    units = [_unit(tmp_path, i) for i in range(3)]
    stale = [BuildUnit(u.unit_id, u.patient_id, {**u.tables, "quarantine": _loose(u.tables["quarantine"], "0")}, u.samples)
             for u in units]
    result = _build(tmp_path, stale)
    path = next(result.path / f["path"] for f in result.manifest["files"] if f["table"] == "quarantine")
    assert pq.read_schema(path).equals(load_schema("quarantine").arrow, check_metadata=True)
    assert verify_dataset(result.path) == []


@pytest.mark.parametrize(("nullable", "version", "problem"), [
    (True, None, "table 'quarantine' column 'stage' is nullable, schema v{v} says not nullable"),
    (False, "0", "table 'quarantine' is marked schema version 0, schema is v{v}"),
])
def test_verify_names_a_table_that_does_not_match_its_schema_exactly(tmp_path, nullable, version, problem):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)])
    manifest_path = result.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(f for f in manifest["files"] if f["table"] == "quarantine")
    path = result.path / entry["path"]
    table = pq.read_table(path)
    loose = _loose(table, version or table.schema.metadata[b"ctcorpus.schema_version"].decode(), nullable)
    pq.write_table(loose, path)
    entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size  # rewritten with its manifest entry
    manifest_path.write_text(json.dumps(manifest))
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert problems == {entry["path"]: problem.format(v=load_schema("quarantine").version)}


def test_verify_names_an_extra_file_and_an_extra_empty_folder(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)])
    (result.path / "shards" / "extra").mkdir()  # a split a loader globbing shards/* would find
    (result.path / "tables" / "notes.txt").write_text("x")
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert problems == {"shards/extra": "a folder holding no file, not written by the build",
                        "tables/notes.txt": "not listed in the manifest"}


@pytest.mark.parametrize("outside", ["/etc/hostname", "../elsewhere.parquet", "tables/../../elsewhere.parquet"])
def test_verify_reads_no_file_outside_the_dataset_a_manifest_names(tmp_path, outside):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(3)])
    (tmp_path / "elsewhere.parquet").write_bytes(b"not the dataset's")
    manifest_path = result.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["path"] = outside
    manifest_path.write_text(json.dumps(manifest))
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert problems[outside].startswith("a path outside the dataset folder")


def test_verify_names_a_table_written_under_another_schema_version(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(6)])
    manifest_path = result.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    table = next(f for f in manifest["files"] if f["kind"] == "parquet")
    current = manifest["schemas"][table["table"]]
    manifest["schemas"][table["table"]] = current - 1  # as an older ctcorpus would have written it: files and manifest
    tables = [f for f in manifest["files"] if f.get("table") == table["table"]]
    for entry in tables:
        path = result.path / entry["path"]
        pq.write_table(_loose(pq.read_table(path), str(current - 1), nullable=False), path)
        entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    problems = {p.path: p.problem for p in verify_dataset(result.path)}
    assert set(problems) == {f["path"] for f in tables}
    assert f"written with schema v{current - 1} of {table['table']!r}" in problems[table["path"]]
    assert f"checks v{current}" in problems[table["path"]]


def _edit_manifest(dataset: Path, edit) -> dict[str, str]:
    """Apply ``edit`` to the manifest of ``dataset`` and return what verify finds, by path."""
    path = dataset / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return {p.path: p.problem for p in verify_dataset(dataset)}


@pytest.mark.parametrize(("field", "edit"), [
    ("config_sha256", lambda m: m["config"]["outputs"].update(split_key="edited")),
    ("config_sha256", lambda m: m.update(config_sha256="0" * 64)),
    ("geometry.spacing_mm", lambda m: m["geometry"].update(spacing_mm=[1.0, 1.0, 1.0])),  # what a model trains on
    ("geometry.orientation", lambda m: m["geometry"].update(orientation="RAS")),
    ("splits.train.patients", lambda m: m["splits"]["train"].update(patients=m["splits"]["train"]["patients"] + 1)),
    ("splits.test.samples", lambda m: m["splits"]["test"].update(samples=0)),
    ("splits.validation.studies", lambda m: m["splits"]["validation"].update(studies=9)),
    ("producers.quarantine", lambda m: m["producers"].update(quarantine=["rules-v0"])),
    ("producers.samples", lambda m: m["producers"].pop("samples")),
    ("schemas.samples", lambda m: m["schemas"].update(samples=m["schemas"]["samples"] - 1)),
    ("schemas", lambda m: m.update(schemas=[])),  # each table file was named unreadable instead
    ("splits", lambda m: m.update(splits=None)),  # verify ended with a TypeError
])
def test_verify_recomputes_the_manifests_own_fields_and_names_an_edited_one(tmp_path, field, edit):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(12)])
    assert verify_dataset(result.path) == []
    problems = _edit_manifest(result.path, edit)
    assert list(problems) == ["manifest.json"]
    assert problems["manifest.json"].startswith(f"{field}: the manifest says ")


def test_the_build_command_shows_the_writing_s_progress_and_what_it_changed(tmp_path, monkeypatch):
    """The lines of the writing (logger ``ctcorpus.outputs``) reached no handler: `ctcorpus build` fell silent."""
    import flows.build
    import flows.runtime

    def built(**parameters):
        logging.getLogger("ctcorpus.outputs.dataset").info("writing shards split=train done=9/9")
        return {"path": str(tmp_path / "v1"), "files": 24, "splits": {},
                "changes": "unchanged, byte-identical to the version it replaced"}

    monkeypatch.setattr(flows.runtime, "start_prefect_server", lambda: None)
    monkeypatch.setattr(flows.build, "build_dataset", built)
    result = CliRunner().invoke(app, ["build", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "v1")])
    assert result.exit_code == 0, result.output
    assert "INFO ctcorpus.outputs.dataset writing shards split=train done=9/9" in result.output
    assert "unchanged, byte-identical" in result.output  # the summary's changes row


@pytest.mark.parametrize(("text", "reason"), [
    ('{"files": [', "not valid JSON (Expecting value"),
    ("{}", "no 'files' list"),
    ('{"files": [{"path": "a.tar"}]}', "'files' does not match the manifest schema"),
])
def test_verify_of_a_corrupt_manifest_is_one_line_naming_it(tmp_path, text, reason):
    (tmp_path / "manifest.json").write_text(text)
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"{tmp_path / 'manifest.json'}: {reason}")
    assert len(result.output.splitlines()) == 1


def test_outputs_read_without_ctcorpus_code(tmp_path):
    result = _build(tmp_path, [_unit(tmp_path, i) for i in range(6)], shard_max_bytes=10**9)
    shard_paths = sorted(str(result.path / f["path"]) for f in result.manifest["files"] if f["kind"] == "shard")
    seen = 0
    for sample in wds.WebDataset(shard_paths, shardshuffle=False):
        raw = sample["hu.npy.zst"]
        arr = np.load(io.BytesIO(pa.CompressedInputStream(pa.BufferReader(raw), "zstd").read()))
        assert arr.dtype == np.int16 and arr.shape == (4, 8, 8)
        assert np.array_equal(arr, decode_array(raw))
        assert json.loads(sample["meta.json"])["split"] in {"train", "validation", "test"}
        seen += 1
    assert seen == 6
    frame = pd.read_parquet(result.path / "tables" / "quarantine")
    assert len(frame) == 6 and set(frame["reason"]) == {"localizer"}
    glob = str(result.path / "tables" / "quarantine" / "*.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == 6
    assert read_manifest(result.path)["files"]


def _shards(result) -> list[dict]:
    return [f for f in result.manifest["files"] if f["kind"] == "shard"]


def _keys(path: Path) -> list[str]:
    """The sample keys of a shard in the order written."""
    with tarfile.open(path) as tar:
        return list(dict.fromkeys(name.split(".", 1)[0] for name in tar.getnames()))


def test_a_shard_is_no_bigger_than_shard_max_bytes_with_its_tar_headers_and_padding(tmp_path):
    units = [_unit(tmp_path, i) for i in range(40)]
    shards = _shards(_build(tmp_path, units, shard_max_bytes=30 * 1024))
    assert max(f["count"] for f in shards) > 1 and all(f["bytes"] <= 30 * 1024 for f in shards)
    # a sample whose tar alone is bigger than shard_max_bytes is a shard of its own
    assert {f["count"] for f in _shards(_build(tmp_path, units, "small", shard_max_bytes=4096))} == {1}


@pytest.mark.parametrize("seed", [None, 7])
def test_patients_added_to_the_export_leave_the_shards_they_do_not_fall_into_byte_identical(tmp_path, seed):
    units = [_unit(tmp_path, i, slices=200) for i in range(126)]  # ~30 kB samples, a few to a shard
    added = units[::21]  # six new patients spread over the volume-id order, not appended after it
    v1, v2 = (_build(tmp_path, us, name, shard_max_bytes=120 * 1024, shard_shuffle_seed=seed)
              for us, name in (([u for u in units if u not in added], "v1"), (units, "v2")))
    old = {f["sha256"] for f in _shards(v1)}
    new = [f for f in _shards(v2) if f["sha256"] not in old]
    holding_added = [f for f in _shards(v2) if {u.samples[0].volume_id for u in added} & set(_keys(v2.path / f["path"]))]
    assert len(_shards(v1)) > 20
    assert len(new) <= 2 * len(holding_added)  # the shards a new sample fell into, and at most as many after them
    assert verify_dataset(v2.path) == []


def test_the_shuffle_seed_mixes_the_samples_inside_a_shard_and_keeps_its_members(tmp_path):
    units = [_unit(tmp_path, i) for i in range(60)]
    plain, mixed = (_build(tmp_path, units, name, shard_max_bytes=20 * 1024, shard_shuffle_seed=seed)
                    for name, seed in (("plain", None), ("mixed", 7)))
    order = {f["path"]: _keys(plain.path / f["path"]) for f in _shards(plain)}
    shuffled = {f["path"]: _keys(mixed.path / f["path"]) for f in _shards(mixed)}
    assert all(keys == sorted(keys) for keys in order.values())
    assert {p: sorted(keys) for p, keys in shuffled.items()} == order
    assert shuffled != order
