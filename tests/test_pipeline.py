"""The stages composed (no orchestrator): seeded defects end to end, idempotent and incremental runs,
resuming after SIGKILL (an ingest run, a build at each step of its writing) with byte-identical manifests."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest

from ctcorpus import pipeline
from ctcorpus.cli import demo_config
from ctcorpus.config import REDACTED, CorpusConfig, config_from_dict
from ctcorpus.config.reports import ReportsConfig
from ctcorpus.errors import AnatomyError, SnippetError
from ctcorpus.ingest import Stack, discover
from ctcorpus.ingest import pipeline as ingest_pipeline
from ctcorpus.outputs import decode_array
from ctcorpus.records import sha256_file, sha256_of_hashes
from ctcorpus.reports import analysis_settings
from ctcorpus.synth import generate_export
from ctcorpus.synth.phantom import LABEL_TABLE
from ctcorpus.synth.truth import ExportTruth, SeriesTruth, load_truth

ROOT = Path(__file__).resolve().parents[1]


def _config(folder: Path, export: Path) -> CorpusConfig:
    data = demo_config(folder)
    data["run"]["export_dir"] = str(export)
    data["run"]["report_files"] = [str(export / "reports.csv")] + (
        [str(export / "reports_latin1.csv")] if (export / "reports_latin1.csv").exists() else []
    )
    data["anatomy"] = {"backend": "threshold"}
    return config_from_dict(data)


def _run(config: CorpusConfig, work: Path) -> pipeline.RunSummary:
    plan = pipeline.plan_export(config, work)
    return pipeline.record_run(plan, [pipeline.process_unit(u, config, work) for u in plan.units], work)


def _one_study(tmp_path: Path) -> tuple[CorpusConfig, Path, pipeline.ExportPlan, Stack, SeriesTruth]:
    """A one-patient export's config, work folder and plan, its study's selected stack and the
    reconstruction that stands in for that stack."""
    export = tmp_path / "export"
    truth = generate_export(export, patients=1, seed=7, language="en", matrix=64, n_slices=24)
    config, work = _config(tmp_path, export), tmp_path / "work"
    plan = pipeline.plan_export(config, work)
    unit = plan.units[0]
    stack = next(s for s in unit.stacks if s.stack_key == unit.candidates[0][0])
    recon = next(s for s in truth.series if s.kind == "recon" and s.study_uid == stack.first.study_uid)
    return config, work, plan, stack, recon


def _fail_resampling(monkeypatch: pytest.MonkeyPatch, stack: Stack, error: BaseException) -> Callable[..., Any]:
    """Make resampling ``stack`` raise ``error`` (every other stack resamples); return the real function."""
    real = ingest_pipeline.resample_volume

    def failing(volume, config):
        if volume.stack_key == stack.stack_key:
            raise error
        return real(volume, config)

    monkeypatch.setattr(ingest_pipeline, "resample_volume", failing)
    return real


def _assert_retried_then_kept(config: CorpusConfig, work: Path) -> None:
    """A stack whose volume always fails is ingested again by the next runs, then kept as failed."""
    runs = [_run(config, work).computed for _ in range(pipeline.STAGE_ATTEMPTS)]
    assert runs == [{"ingest": 1}] * (pipeline.STAGE_ATTEMPTS - 1) + [{}]
    (row,) = _private_quarantine(work).query("reason == 'stage_failed'").itertuples()
    assert f"failed in {pipeline.STAGE_ATTEMPTS} runs, kept so" in row.message


@pytest.fixture(scope="module")
def defects_export(tmp_path_factory) -> Path:
    export = tmp_path_factory.mktemp("defects") / "export"
    generate_export(export, patients=2, seed=3, defects=True, phi=True, language="mixed")
    return export


@pytest.fixture(scope="module")
def built(defects_export, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = _config(folder, defects_export)
    summary = _run(config, folder / "work")
    result = pipeline.build_from_work(config, folder / "work", folder / "dataset")
    return config, folder, summary, result


def _table(dataset: Path, name: str):
    return pq.read_table(dataset / "tables" / name).to_pandas()


def _private_quarantine(work: Path):
    """The operators' quarantine of the last run: the corpus's rows with the real paths and messages."""
    return pd.read_json(work / pipeline.PRIVATE_QUARANTINE, lines=True, dtype=False)


@pytest.mark.parametrize(("one", "other", "same"), [
    # one export writes the alphabetic group only, another adds the ideographic and phonetic groups
    ("Yamada^Tarou", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
    ("=山田^太郎", "=山田^太郎=やまだ^たろう", True),  # no alphabetic group: the first one written
    ("DOE^JOHN^^^", "Doe^John", True),
    ("Yamada^Tarou=山田^太郎", "Yamada^Hanako=山田^太郎", False),
])
def test_the_person_key_reads_a_name_by_its_first_written_group(one: str, other: str, same: bool) -> None:
    from ctcorpus.pseudonym import Pseudonymizer

    p = Pseudonymizer.from_literal("k" * 32)
    keys = [pipeline.person_key(SimpleNamespace(first=SimpleNamespace(patient_name=name, patient_birth_date="19600101")), p)
            for name in (one, other)]
    assert all(keys) and (keys[0] == keys[1]) is same



@pytest.mark.parametrize(("name", "birth_date", "keyed"), [
    ("ANONYMOUS", "19600101", False), ("Anonymized^Patient", "19600101", False), ("NO^NAME", "19600101", False),
    ("XXXX^XXX", "19600101", False), ("^", "19600101", False), ("UNBEKANNT", "19600101", False),
    ("Doe^John", "19000101", False), ("Doe^John", "00000000", False), ("Doe^John", "", False),
    ("ANON-0001", "19600101", True), ("Doe^John", "19600101", True), ("De^Vries", "19600101", True),
])
def test_the_person_key_of_a_placeholder_name_or_birth_date_is_empty(name: str, birth_date: str, keyed: bool) -> None:
    # a de-identified export's "ANONYMOUS" and the birth dates it kept made everyone born on one day one person
    from ctcorpus.pseudonym import Pseudonymizer

    stack = SimpleNamespace(first=SimpleNamespace(patient_name=name, patient_birth_date=birth_date))
    assert bool(pipeline.person_key(stack, Pseudonymizer.from_literal("k" * 32))) is keyed

def test_every_seeded_defect_has_its_reason(defects_export, built):
    _, folder, summary, result = built
    truth = load_truth(defects_export)
    quarantine = _table(result.path, "quarantine")
    reasons_by_path = _private_quarantine(folder / "work").groupby("path")["reason"].agg(set).to_dict()  # the real paths
    reasons = set(quarantine["reason"])
    for defect in truth.defects:
        if not defect.expected_reason:
            continue
        if defect.kind in {"no_report"}:
            assert defect.expected_reason in reasons
            continue
        if defect.paths[0].startswith("reports"):
            assert defect.expected_reason in set(quarantine[quarantine["stage"] == "reports"]["reason"]), defect
            continue
        series = next((s for s in truth.series if defect.paths[0] in s.files), None)
        paths = set(series.files) if series else set(defect.paths)
        found = set().union(*(reasons_by_path.get(p, set()) for p in paths))
        assert defect.expected_reason in found, (defect.kind, found)
    assert summary.failed == 0


def _header_identifiers(export: Path) -> set[str]:
    """The PatientIDs, AccessionNumbers, Study/Series/SOP UIDs, patient name parts and birth dates
    of the export's DICOM headers (parts of 4 characters or more: "LI" is in "SPLINE")."""
    values: set[str] = set()
    for path in sorted(p for p in export.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, EOFError, OSError, ValueError):  # not DICOM, truncated
            continue
        values.update(str(ds.get(k) or "") for k in ("PatientID", "AccessionNumber", "StudyInstanceUID",
                                                    "SeriesInstanceUID", "SOPInstanceUID", "PatientBirthDate"))
        values.update(re.split(r"[\^=\s]+", str(ds.get("PatientName") or "")))
    return {v for v in values if len(v) >= 4}


def test_no_header_identifier_reaches_a_table_and_operators_keep_the_real_paths(defects_export, built):
    # the quarantine table named files by their export paths (PAT_<PatientID>/STUDY_<Accession>/...)
    # and stacks by their series descriptions, the patient's name in them
    _, folder, _, result = built
    identifiers = _header_identifiers(defects_export)
    assert any(i.startswith("PID") for i in identifiers) and any(i.startswith("ACC") for i in identifiers)
    leaks = set()
    for table in sorted((result.path / "tables").iterdir()):
        frame = _table(result.path, table.name)
        for column in frame.columns:
            texts = [v for v in frame[column] if isinstance(v, str)]
            texts += [t for v in frame[column] if isinstance(v, np.ndarray) for t in v if isinstance(t, str)]
            text = "\n".join(texts).lower()
            leaks.update((table.name, column, i) for i in identifiers if i.lower() in text)
    assert not leaks
    # each quarantined file has its real path in the operators' record, and its row there names the corpus's path
    private = _private_quarantine(folder / "work")
    assert sorted(private["corpus_path"]) == sorted(_table(result.path, "quarantine")["path"])  # no study failed
    truncated = private.query("reason == 'truncated'")
    assert len(truncated) and all((defects_export / path).is_file() for path in truncated["path"])
    assert (private["path"] != private["corpus_path"]).any()


def test_quarantine_rows_carry_the_hash_of_the_file_stack_or_export_they_name(defects_export, built):
    # every row of the export, study and reports results had an empty source_sha256
    _, folder, _, result = built
    quarantine = _private_quarantine(folder / "work")  # the corpus's rows with the real paths
    corpus = _table(result.path, "quarantine")
    # the text stage stores its rows with the volume's source; the build joins in the report's export
    stored_alone = quarantine["stage"] == "snippets"
    assert stored_alone.any() and set(quarantine[stored_alone]["source_sha256"]).isdisjoint(corpus["source_sha256"])
    assert sorted(quarantine[~stored_alone]["source_sha256"]) == sorted(corpus[corpus["stage"] != "snippets"]["source_sha256"])
    for reason in ("localizer", "non_ct", "truncated"):
        row = quarantine[quarantine["reason"] == reason].iloc[0]
        assert row["source_sha256"] == sha256_file(defects_export / row["path"])
    superseded = quarantine[quarantine["reason"] == "superseded_report"].iloc[0]
    assert superseded["source_sha256"] == sha256_file(Path(superseded["path"]))
    stacks = quarantine[quarantine["reason"].isin(["not_selected", "gantry_tilt"])]  # the stack's files, as its series row
    assert len(stacks) and set(stacks["source_sha256"]) <= set(_table(result.path, "series")["source_sha256"])


def test_the_run_summary_counts_every_quarantine_row_of_the_build(built):
    # it counted the files discovery quarantined only: not the reports stage's rows (an unreadable
    # export), nor a rejected stack's, nor the studies' (the ingest command's 'quarantined' line)
    _, _, summary, result = built
    assert summary.quarantined == len(_table(result.path, "quarantine"))


def test_the_split_counts_give_every_volume_and_the_shards_samples_apart(built):
    # a volume without a report is in the volumes table and in no shard: the counts called the shards' samples volumes
    _, _, summary, result = built
    counts = result.manifest["splits"].values()
    shards = sum(f["count"] for f in result.manifest["files"] if f["kind"] == "shard")
    assert sum(c["volumes"] for c in counts) == summary.volumes == len(_table(result.path, "volumes"))
    assert sum(c["samples"] for c in counts) == shards < summary.volumes


def test_a_build_of_a_defective_export_verifies_clean(built):
    """verify recomputes the manifest's split counts, producers and schemas from the files: a real build,
    quarantined studies and all, must state them as verify finds them."""
    from ctcorpus.outputs import verify_dataset

    assert verify_dataset(built[3].path) == []


def test_clean_studies_become_volumes_with_reports_and_snippets(defects_export, built):
    _, _, _, result = built
    truth = load_truth(defects_export)
    volumes = _table(result.path, "volumes")
    samples = _table(result.path, "samples")
    studies_with_axial = {s.study_uid for s in truth.series if s.kind == "axial"}
    assert len(volumes) == len(studies_with_axial)
    assert set(samples["volume_id"]) == set(volumes["volume_id"])
    assert (samples["mask_source"] == "threshold-1.2").all()
    snippets = _table(result.path, "snippets")
    assert len(snippets) > 0 and snippets["slice_index"].ge(0).all()
    reports = _table(result.path, "reports")
    text = " ".join(reports["text"])
    for value in truth.phi_header_values:
        assert value not in text  # PHI never reaches the corpus
    manifest = result.manifest
    assert manifest["geometry"]["orientation"] == "LPS" and manifest["geometry"]["spacing_mm"] == [1.5, 1.5, 1.5]
    n_samples = sum(f["count"] for f in manifest["files"] if f["kind"] == "shard")
    assert n_samples == int(samples["in_shards"].sum()) > 0


def test_a_group_case_links_both_orders_reports_and_its_sample_holds_its_own(defects_export, built):
    # The study fulfils a chest order (its AccessionNumber) and an abdomen order (only in its
    # RequestAttributesSequence): both reports link to it, and its sample holds the chest report.
    config, _, _, result = built
    from ctcorpus.ingest import pseudonymizer_for

    p = pseudonymizer_for(config.ingest)
    group = next(d for d in load_truth(defects_export).defects if d.kind == "group_case")
    reports = _table(result.path, "reports").set_index("report_id")
    own, second = (reports.loc[p.accession(a)] for a in (group.detail["study_accession_number"], group.accession_number))
    assert (own["link_method"], second["link_method"]) == ("accession", "requested_accession")
    assert own["study_id"] == second["study_id"]
    (sample,) = _table(result.path, "samples").query("study_id == @own.study_id")["report_id"]
    assert sample == p.accession(group.detail["study_accession_number"])
    assert "orphan_report" not in set(_table(result.path, "quarantine").query("item_id == @second.name")["reason"])


def test_the_report_only_a_dicom_sr_document_holds_reaches_the_sample(defects_export, built):
    # the study's RIS row is empty; the DICOM export holds its report as a Basic Text SR
    config, _, _, result = built
    from ctcorpus.ingest import pseudonymizer_for

    p = pseudonymizer_for(config.ingest)
    truth = load_truth(defects_export)
    sr = next(d for d in truth.defects if d.kind == "sr_report")
    row = _table(result.path, "reports").set_index("report_id").loc[p.accession(sr.accession_number)]
    assert (row["link_method"], row["encoding"]) == ("dicom_sr", "dicom-sr")
    assert not [i for i in (sr.accession_number, *(s.patient_id for s in truth.series)) if i in row["source_path"]]
    (sample,) = _table(result.path, "samples").query("study_id == @row.study_id")["report_id"]
    assert sample == row.name


def test_a_study_sample_holds_the_report_under_its_own_accession_number():
    def report(report_id: str, method: str) -> dict:
        return {"report_id": report_id, "study_id": "stu-1", "link_method": method, "language": "en", "text": report_id,
                "section_names": [], "section_starts": [], "section_ends": [], "source_sha256": ""}

    empty = {"labels": pa.Table.from_pylist([], schema=pa.schema([("report_id", pa.string())])),
             "sentences": pa.Table.from_pylist([], schema=pa.schema([("report_id", pa.string())]))}
    rows = [report("acc-0abd", "requested_accession"), report("acc-9chest", "accession")]
    assert pipeline._study_reports({**empty, "reports": pa.Table.from_pylist(rows)})["stu-1"].report_id == "acc-9chest"
    rows = [report("acc-9abd", "requested_accession"), report("acc-0pelvis", "requested_accession")]
    assert pipeline._study_reports({**empty, "reports": pa.Table.from_pylist(rows)})["stu-1"].report_id == "acc-0pelvis"


def test_rerun_does_no_work_and_gives_identical_manifest(built, tmp_path):
    config, folder, first, result = built
    again = _run(config, folder / "work")
    assert again.computed == {} and sum(again.cached.values()) == sum(first.computed.values())
    rebuilt = pipeline.build_from_work(config, folder / "work", tmp_path / "dataset")
    assert (rebuilt.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()


def test_a_rerun_plans_the_same_export_hashing_only_the_files_it_could_not_read(defects_export, tmp_path, monkeypatch):
    # a nightly run hashed every file of the export again; the work store keeps each file's sha256
    export = tmp_path / "export"
    shutil.copytree(defects_export, export)
    hour_ago = time.time_ns() - 3600 * 10**9  # older than the window in which a file is not cached
    for path in export.rglob("*"):
        os.utime(path, ns=(hour_ago, hour_ago))
    config = _config(tmp_path, export)
    first = pipeline.plan_export(config, tmp_path / "work")
    assert (tmp_path / "work" / pipeline.DISCOVERY_CACHE).is_file()
    reads = []
    real = discover.read_instances
    monkeypatch.setattr(discover, "read_instances",
                        lambda path, root, **kw: (kw.get("hash_file", True) and reads.append(path)) or real(path, root, **kw))
    assert pipeline.plan_export(config, tmp_path / "work") == first
    not_dicom = {e.path for e in first.quarantine if e.reason == "not_dicom"}  # no header read: nothing to cache
    assert not_dicom and {os.path.relpath(p, export) for p in reads} == not_dicom
    cautious = pipeline.plan_export(config.model_copy(update={"ingest": config.ingest.model_copy(update={"rehash": "always"})}),
                                    tmp_path / "work")
    assert (cautious.export_key, cautious.units) == (first.export_key, first.units)  # the same export result and studies


def test_a_build_reads_its_studies_one_at_a_time_through_its_tracker(built, tmp_path):
    """The build flow's progress counts the studies a build reads (`ctcorpus build` showed none): each is
    handed to the tracker just before it is read, and the dataset is the one built without a tracker."""
    config, folder, _, result = built
    index = json.loads((folder / "work" / pipeline.RUN_INDEX).read_text())
    handed: list[str] = []

    def tracker(studies):
        for study in studies:
            handed.append(study["unit_id"])
            yield study

    units = pipeline.build_units(folder / "work", index, tracker)
    assert next(units).unit_id == "export" and handed == []
    for unit in units:
        assert handed[-1] == unit.unit_id
    assert handed == [u["unit_id"] for u in index["units"] if not u["failed"]] and handed
    tracked = pipeline.build_from_work(config, folder / "work", tmp_path / "dataset", tracker)
    assert (tracked.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()


@pytest.mark.parametrize("stage", ["text", "study"])
def test_a_build_from_a_work_store_missing_a_recorded_result_names_it_and_the_next_ingest_restores_it(built, tmp_path, stage):
    # a work store pruned by hand (it only grows) or copied in part: the build failed with a KeyError (text), or
    # built a version without the study's own rows (study), which verify passed
    from ctcorpus.errors import CtCorpusError

    config, folder, _, result = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    lost = min((work / stage).glob("*/*"))
    shutil.rmtree(lost)
    with pytest.raises(CtCorpusError, match="a stored result the last ingest run recorded is missing") as error:
        pipeline.build_from_work(config, work, tmp_path / "dataset")
    assert error.value.path == str(lost) and not (tmp_path / "dataset").exists()
    assert _run(config, work).computed.get(stage) == 1
    rebuilt = pipeline.build_from_work(config, work, tmp_path / "dataset")
    assert (rebuilt.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()


def test_changed_config_redoes_only_the_stages_it_reads(built, tmp_path):
    config, folder, first, _ = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    data = config.model_dump(mode="json")
    data["snippets"]["bin_mm"] = 24.0
    snippets_only = _run(config_from_dict(data), work)
    assert set(snippets_only.computed) == {"text"} and snippets_only.computed["text"] == first.computed["text"]
    data["anatomy"]["body_hu"] = -450.0
    anatomy_changed = _run(config_from_dict(data), work)
    assert set(anatomy_changed.computed) == {"anatomy", "text"}  # masks and what is joined onto them
    assert anatomy_changed.cached["ingest"] == first.computed["ingest"]


def test_moving_the_segmenter_weights_redoes_nothing(built, tmp_path):
    # the weights' folder was part of the anatomy key: a site that moved them (a new mount, a relative path
    # made absolute against another folder) segmented every volume again, and re-mined every report; the
    # weights themselves are keyed by the segmenter's version, which names them
    config, folder, _, _ = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    data = config.model_dump(mode="json")
    data["anatomy"] |= {"weights_path": str(tmp_path / "weights"), "home_dir": str(tmp_path / "ts"), "allow_download": True}
    assert _run(config_from_dict(data), work).computed == {}


def test_a_new_fingerprint_version_redoes_only_the_text_stage(built, tmp_path, monkeypatch):
    """The ingest results keep an older version's fingerprints (a version in the ingest key would
    re-segment every volume): the text stage recomputes them from the stored arrays."""
    config, folder, first, result = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    monkeypatch.setattr(pipeline, "FINGERPRINT_VERSION", pipeline.FINGERPRINT_VERSION + 1)
    bumped = _run(config, work)
    assert set(bumped.computed) == {"text"} and bumped.computed["text"] == first.computed["text"]
    rebuilt = pipeline.build_from_work(config, work, tmp_path / "dataset")
    old, new = (_table(path, "samples").set_index("volume_id").sort_index() for path in (result.path, rebuilt.path))
    assert (new["fingerprint_version"] == pipeline.FINGERPRINT_VERSION).all()
    assert new["fingerprint"].map(list).tolist() == old["fingerprint"].map(list).tolist()  # one function, same arrays


@pytest.mark.parametrize(("producer", "redone_stages"), [
    ("SNIPPETS_PRODUCER", {"text"}),  # GRAMMAR_VERSION and the snippets package's source
    ("ANATOMY_SOURCE", {"anatomy", "text"}),  # the segmenter's version names its model only
    ("INGEST_PRODUCER", {"ingest", "anatomy", "text", "study"}),  # the ingest package's source, which makes every series row
])
def test_changed_stage_code_redoes_its_results_and_what_is_built_on_them(built, tmp_path, monkeypatch, producer,
                                                                         redone_stages):
    # a source install's version never changes: results made by the code before a fix must not be reused
    config, folder, first, _ = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    monkeypatch.setattr(pipeline, producer, "changed")
    redone = _run(config, work)
    assert set(redone.computed) == redone_stages  # the reports are kept, and the studies but for a new ingest code
    assert all(redone.computed[stage] == first.computed[stage] for stage in redone_stages)


def test_a_failed_segmentation_is_retried_by_the_next_runs_and_then_kept(built, tmp_path, monkeypatch):
    # TotalSegmentator out of memory, a GPU error: stored without a mask, and the next run tries again
    config, folder, _, _ = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    monkeypatch.setattr(pipeline, "ANATOMY_SOURCE", "new")  # the masks are made anew
    segment = pipeline.segment_volume

    def out_of_memory(*args, **kwargs):
        raise AnatomyError("TotalSegmentator failed: OutOfMemoryError: CUDA out of memory")

    monkeypatch.setattr(pipeline, "segment_volume", out_of_memory)
    first = _run(config, work)
    again = _run(config, work)  # still failing: tried again, the text stage with it
    assert first.computed["anatomy"] == again.computed["anatomy"] == again.computed["text"] > 0
    monkeypatch.setattr(pipeline, "segment_volume", segment)
    recovered = _run(config, work)  # a mask now: the samples are built on it
    assert recovered.computed["anatomy"] == recovered.computed["text"] == first.computed["anatomy"]
    assert _run(config, work).computed == {}
    dataset = pipeline.build_from_work(config, work, tmp_path / "dataset").path
    assert "none" not in set(_table(dataset, "samples")["mask_source"])
    # one that always fails is kept after STAGE_ATTEMPTS runs
    monkeypatch.setattr(pipeline, "ANATOMY_SOURCE", "newer")
    monkeypatch.setattr(pipeline, "segment_volume", out_of_memory)
    runs = [_run(config, work).computed.get("anatomy", 0) for _ in range(pipeline.STAGE_ATTEMPTS + 1)]
    assert runs[:-1] == [first.computed["anatomy"]] * pipeline.STAGE_ATTEMPTS and runs[-1] == 0


def test_no_pseudonym_key_is_recorded_and_a_rotated_one_redoes_every_result(built, tmp_path, monkeypatch):
    # with the key, every pseudonym in the corpus can be recomputed from the hospital's ids
    config, folder, first, result = built
    manifest = (result.path / "manifest.json").read_text()
    assert config.ingest.pseudonym_key and config.ingest.pseudonym_key not in manifest and REDACTED in manifest
    # a key from the environment is in no config: results keyed without it kept the old pseudonyms
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    data = config.model_dump(mode="json")
    data["ingest"]["pseudonym_key"] = None
    monkeypatch.setenv("CTCORPUS_PSEUDONYM_KEY", "a-rotated-secret")
    rotated = _run(config_from_dict(data), work)
    assert rotated.cached == {} and rotated.computed == first.computed
    monkeypatch.setenv("SITE_KEY", "a-rotated-secret")  # the same key under another variable: nothing to redo
    data["ingest"]["pseudonym_key_env"] = "SITE_KEY"
    assert _run(config_from_dict(data), work).computed == {}


def test_a_study_without_patient_id_is_quarantined_and_the_build_completes(tmp_path):
    # DICOM allows an empty PatientID; the build stopped with KeyError: '' assigning it a split
    export = tmp_path / "export"
    generate_export(export, patients=2, seed=5)
    blanked = ""
    for path in sorted(p for p in export.rglob("*") if p.is_file() and not p.suffix):  # the DICOM files
        ds = pydicom.dcmread(path)
        blanked = blanked or ds.PatientID
        if ds.PatientID == blanked:
            ds.PatientID = ""
            ds.save_as(path)
    config = _config(tmp_path, export)
    summary = _run(config, tmp_path / "work")
    result = pipeline.build_from_work(config, tmp_path / "work", tmp_path / "dataset")
    quarantine = _table(result.path, "quarantine")
    missing = quarantine[quarantine["reason"] == "missing_patient_id"]
    assert len(missing) >= 1 and missing["message"].str.contains("no PatientID").all()
    # their reports leave the corpus with them, each with its row: they were left out unnamed
    reports = missing[missing["stage"] == "reports"]
    assert len(reports) >= 1 and reports["item_id"].str.startswith("acc-").all()
    assert set(reports["item_id"]).isdisjoint(_table(result.path, "reports")["report_id"])
    assert summary.quarantined == len(quarantine)
    assert summary.studies >= 1 and summary.failed == 0
    assert len(_table(result.path, "volumes")) == summary.volumes > 0  # the other patient's studies


def test_a_missing_report_export_is_quarantined_and_the_run_completes(tmp_path):
    export = tmp_path / "export"
    generate_export(export, patients=1, seed=7, language="en", matrix=64, n_slices=24)
    missing = tmp_path / "ris" / "reports_2.csv"
    data = _config(tmp_path, export).model_dump(mode="json")
    data["run"]["report_files"] = [str(export / "reports.csv"), str(missing)]
    config, work = config_from_dict(data), tmp_path / "work"
    assert _run(config, work).failed == 0  # hashing the missing export for the key raised FileNotFoundError
    result = pipeline.build_from_work(config, work, tmp_path / "v1")
    unreadable = _table(result.path, "quarantine").query("reason == 'unreadable_report'")
    assert list(unreadable["path"]) == [str(missing)] and "not found" in unreadable["message"].iloc[0]
    assert len(_table(result.path, "reports")) > 0  # the other export is read
    missing.parent.mkdir()
    shutil.copy(export / "reports.csv", missing)  # it arrives: the reports are done again, with it
    _run(config, work)
    again = pipeline.build_from_work(config, work, tmp_path / "v2")
    assert "unreadable_report" not in set(_table(again.path, "quarantine")["reason"])


def test_a_study_whose_selected_stack_is_rejected_at_assembly_falls_back_to_its_next_stack(tmp_path):
    # one file whose pixel data cannot be decoded rejects its stack when the volume is assembled;
    # that result's series row and quarantine row, naming the file, never reached the build; and the
    # study got no volume, although its second reconstruction assembles
    config, work, plan, stack, recon = _one_study(tmp_path)
    unit = plan.units[0]
    broken = stack.instances[len(stack.instances) // 2]
    dataset = pydicom.dcmread(broken.path)  # an RLE frame of no segments: whole at indexing, undecodable
    dataset.PixelData = pydicom.encaps.encapsulate([bytes(64)])
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    dataset.save_as(broken.path)
    summary = _run(config, work)
    assert summary.failed == 0 and summary.volumes == len(plan.units)
    result = pipeline.build_from_work(config, work, tmp_path / "v1")
    quarantine = _table(result.path, "quarantine")
    assert summary.quarantined == len(quarantine)
    quarantine = _private_quarantine(work)  # the real paths
    unreadable = quarantine.query("reason == 'unreadable_pixels'")
    assert list(unreadable["path"]) == [broken.rel_path] and broken.rel_path in unreadable["message"].iloc[0]
    volumes = _table(result.path, "volumes")
    assert list(volumes[volumes["study_id"] == unit.unit_id]["series_number"]) == [recon.series_number]
    # the quarantine says which stack stands in, and does not call it (or the rejected one) unselected
    (fallback,) = quarantine.query("reason == 'fallback_volume'").itertuples()
    assert fallback.path in recon.files and fallback.action == "accept"
    assert f"series {stack.first.series_number} " in fallback.message
    unselected = quarantine.query("reason == 'not_selected'")
    assert not set(unselected["path"]) & (set(recon.files) | {i.rel_path for i in stack.instances})
    series = _table(result.path, "series")
    assert series["stack_id"].is_unique and len(series) == sum(len(u.stacks) for u in plan.units)
    assert list(series[~series["accepted"]]["series_number"]) == [stack.first.series_number]
    # a re-run reuses every result and makes the same choice
    assert _run(config, work).computed == {}
    again = pipeline.build_from_work(config, work, tmp_path / "again" / "v1")
    assert (again.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()


def test_a_series_resent_with_corrected_headers_gets_a_new_series_row_though_no_volume_holds_it(defects_export, built,
                                                                                                    tmp_path):
    # the same UIDs, so the same stack: its row (in the study's results) must follow its files
    config, folder, _, _ = built
    export, work = tmp_path / "export", tmp_path / "work"
    shutil.copytree(defects_export, export)
    shutil.copytree(folder / "work", work)
    recon = next(s for s in load_truth(defects_export).series if s.kind == "recon")
    for rel in recon.files:
        header = pydicom.dcmread(export / rel)
        header.SeriesDescription = "Thorax corrected"
        header.save_as(export / rel)
    config = _config(tmp_path, export)
    _run(config, work)
    series = _table(pipeline.build_from_work(config, work, tmp_path / "dataset").path, "series")
    assert "Thorax corrected" in set(series["series_description"])


def test_a_study_failing_on_a_rerun_keeps_the_results_an_earlier_run_stored(built, tmp_path):
    # workers without the pseudonym key (or killed) failed every study of a re-run, and the next
    # build dropped them all from a complete work store
    config, folder, _, result = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    plan = pipeline.plan_export(config, work)
    summary = pipeline.record_run(plan, [pipeline.failed_outcome(u, "KilledWorker", config, work) for u in plan.units], work)
    assert summary.failed == 0 and summary.computed == {}
    rebuilt = pipeline.build_from_work(config, work, tmp_path / "dataset")
    assert (rebuilt.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()
    fresh = tmp_path / "fresh"  # nothing stored: the study failed, and nothing is written for it
    plan = pipeline.plan_export(config, fresh)
    outcomes = [pipeline.failed_outcome(u, "KilledWorker", config, fresh) for u in plan.units]
    assert [o.failed for o in outcomes] == ["KilledWorker"] * len(plan.units)
    assert not any((fresh / stage).exists() for stage in ("study", "ingest", "anatomy", "text"))


def test_the_manifest_states_the_geometry_and_config_the_volumes_were_made_with(built, tmp_path):
    # a build with another config (`build` without -c: the defaults) stated its own spacing, not the volumes'
    config, folder, _, _ = built
    data = config.model_dump(mode="json")
    data["ingest"]["target_spacing_mm"] = [9.0, 9.0, 9.0]
    data["outputs"]["parquet_row_group_rows"] = 7  # the build's own section is the build's
    result = pipeline.build_from_work(config_from_dict(data), folder / "work", tmp_path / "dataset")
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["geometry"]["spacing_mm"] == list(config.ingest.target_spacing_mm) != [9.0, 9.0, 9.0]
    assert manifest["config"]["ingest"]["target_spacing_mm"] == list(config.ingest.target_spacing_mm)
    assert manifest["config"]["outputs"]["parquet_row_group_rows"] == 7


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> tuple[ExportTruth, Path]:
    """Two patients' studies, each an axial series and a second reconstruction (64 x 64 pixels, 24 slices)."""
    export = tmp_path_factory.mktemp("small") / "export"
    return generate_export(export, patients=2, seed=7, language="en", matrix=64, n_slices=24), export


def _shard_samples(dataset: Path) -> dict[str, dict[str, bytes]]:
    """Every WebDataset sample of a build: its files' bytes by name, per volume id."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted((dataset / "shards").rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, name = member.name.split(".", 1)
                samples.setdefault(key, {})[name] = tar.extractfile(member).read()
    return samples


def _organs_on_sample_grid(sample: dict[str, bytes], series: SeriesTruth, export: Path) -> tuple[np.ndarray, np.ndarray]:
    """The sample's HU and the phantom's ground-truth organ labels of ``series`` resampled onto the
    grid its meta.json states (nearest neighbour, in patient coordinates)."""
    import SimpleITK as sitk

    meta = json.loads(sample["meta.json"])
    labels = sitk.GetImageFromArray(np.load(export / series.label_map))
    labels.SetOrigin(series.origin_mm)
    labels.SetSpacing(series.spacing_mm)
    labels.SetDirection(series.direction)
    grid = sitk.Image(meta["shape_zyx"][::-1], sitk.sitkUInt8)
    grid.SetOrigin(meta["origin_xyz"])
    grid.SetSpacing(meta["spacing_zyx"][::-1])
    grid.SetDirection(meta["direction"])
    organs = sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return decode_array(sample["hu.npy.zst"]), sitk.GetArrayFromImage(organs)


def test_a_ras_build_states_ras_and_its_spacing_everywhere_and_its_volumes_are_ras(small_export, tmp_path):
    # CT-CLIP #41, Merlin #10: users found flipped volumes and no word of the orientation. Only the
    # default LPS was checked, which a hard-coded "LPS" passes: the manifest, each sample's meta.json
    # and the volumes table must state the orientation and spacing the volumes were made with
    truth, export = small_export
    spacing = [3.0, 3.0, 5.0]
    datasets = {}
    for orientation in ("LPS", "RAS"):
        data = _config(tmp_path, export).model_dump(mode="json")
        data["ingest"] |= {"orientation": orientation, "target_spacing_mm": spacing}
        config, work = config_from_dict(data), tmp_path / orientation / "work"
        _run(config, work)
        datasets[orientation] = pipeline.build_from_work(config, work, tmp_path / orientation / "dataset").path
    ras = datasets["RAS"]
    geometry = json.loads((ras / "manifest.json").read_text())["geometry"]
    assert (geometry["orientation"], geometry["spacing_mm"]) == ("RAS", spacing)
    assert f"Orientation: **RAS**; spacing (x, y, z): **{spacing} mm**" in (ras / "dataset_card.md").read_text()
    volumes = _table(ras, "volumes")
    assert set(volumes["orientation"]) == {"RAS"} and [list(s) for s in volumes["spacing_mm"]] == [spacing] * len(volumes)
    samples = {orientation: _shard_samples(path) for orientation, path in datasets.items()}
    assert set(samples["RAS"]) == set(volumes["volume_id"]) == set(samples["LPS"])
    for volume_id, sample in samples["RAS"].items():
        meta = json.loads(sample["meta.json"])
        assert (meta["orientation"], meta["spacing_zyx"]) == ("RAS", spacing[::-1])
        assert meta["direction"] == [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
        lps = decode_array(samples["LPS"][volume_id]["hu.npy.zst"])
        assert np.array_equal(decode_array(sample["hu.npy.zst"]), lps[:, ::-1, ::-1])  # flipped along y and x
    # the phantom's liver (patient right, 60 HU) and spleen (left, 50 HU) lie where each build's stated
    # geometry puts them: RAS's x runs to the patient's right, LPS's to the left
    from ctcorpus.ingest import pseudonymizer_for

    axial = next(s for s in truth.series if s.kind == "axial")
    scan = volumes["study_id"] == pseudonymizer_for(_config(tmp_path, export).ingest).study(axial.study_uid)
    (volume_id,) = volumes[scan & (volumes["series_number"] == axial.series_number)]["volume_id"]
    for orientation in ("LPS", "RAS"):
        hu, organs = _organs_on_sample_grid(samples[orientation][volume_id], axial, export)
        liver, spleen = organs == LABEL_TABLE["liver"], organs == LABEL_TABLE["spleen"]
        assert (np.argwhere(liver)[:, 2].mean() > hu.shape[2] / 2) == (orientation == "RAS")
        assert abs(np.median(hu[liver]) - 60) <= 5 and abs(np.median(hu[spleen]) - 50) <= 5, orientation


def test_the_reconstructions_of_one_scan_share_its_split_and_its_one_report(small_export, tmp_path):
    # CT-RATE holds 50,188 reconstructions of 25,692 CTs: with volumes_per_study "all" every volume of a
    # study must sit in one split and carry the study's report, which stays one row of the reports table;
    # the audit must not call the study's own volumes duplicates, yet still find its text under another study
    from ctcorpus.audit import LEAK_KINDS, FindingKind
    from ctcorpus.ingest import pseudonymizer_for

    truth, source = small_export
    export = tmp_path / "export"
    shutil.copytree(source, export)
    axial = [s for s in truth.series if s.kind == "axial"]
    scan = axial[0]
    copy = next(s for s in axial if s.patient_id != scan.patient_id)  # another patient's study
    with open(export / "reports.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    accession = {r.study_uid: r.accession_number for r in truth.reports}
    text = next(row["report_text"] for row in rows if row["accession_number"] == accession[scan.study_uid])
    with open(export / "reports.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows({**row, "report_text": text} if row["accession_number"] == accession[copy.study_uid] else row
                         for row in rows)
    data = _config(tmp_path, export).model_dump(mode="json")
    data["ingest"]["volumes_per_study"] = "all"
    config = config_from_dict(data)
    result, _ = _audit(config, tmp_path)
    dataset = tmp_path / "dataset"
    p = pseudonymizer_for(config.ingest)
    study_id, report_id, copied_id = (p.study(scan.study_uid), p.accession(accession[scan.study_uid]),
                                      p.accession(accession[copy.study_uid]))
    volumes = _table(dataset, "volumes")
    volumes = volumes[volumes["study_id"] == study_id]
    recon = next(s for s in truth.series if s.kind == "recon" and s.study_uid == scan.study_uid)
    assert sorted(volumes["series_number"]) == sorted([scan.series_number, recon.series_number])
    assert volumes["split"].nunique() == 1
    reports = _table(dataset, "reports")
    assert list(reports[reports["study_id"] == study_id]["report_id"]) == [report_id]
    assert reports["report_id"].is_unique
    samples = _shard_samples(dataset)
    for volume_id in volumes["volume_id"]:
        report = json.loads(samples[volume_id]["report.json"])
        assert report["report_id"] == report_id and report["text"] == reports.set_index("report_id").at[report_id, "text"]
    copies = [f for f in result.findings if f.kind in (FindingKind.DUPLICATE_REPORT, FindingKind.NEAR_DUPLICATE_REPORT)]
    assert [(f.kind, f.ids) for f in copies] == [(FindingKind.DUPLICATE_REPORT, tuple(sorted((report_id, copied_id))))]
    own = {study_id, *volumes["volume_id"]}
    assert not [f for f in result.findings if f.kind in LEAK_KINDS - {FindingKind.DUPLICATE_REPORT} and own & set(f.ids)]


def test_every_report_sentence_and_label_row_names_the_rules_that_labelled_it(built, tmp_path, monkeypatch):
    # CT-CLIP #55: a re-run of the labeler gave other labels, and nothing told the two datasets apart:
    # every row names the rules digest (the reports producer), so a build under changed rules says so
    from ctcorpus.reports import stage

    config, folder, _, result = built
    assert stage.PRODUCER.startswith("rules-")
    for name in ("reports", "sentences", "labels"):
        table = _table(result.path, name)
        assert len(table) > 0 and set(table["producer"]) == {stage.PRODUCER}, name
        assert result.manifest["producers"][name] == [stage.PRODUCER]
    assert f"| labels | `{stage.PRODUCER}` |" in (result.path / "dataset_card.md").read_text()
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    changed = "rules-changed+spacy-0"
    monkeypatch.setattr(stage, "PRODUCER", changed)
    monkeypatch.setattr(pipeline, "REPORTS_PRODUCER", changed)  # one value: the pipeline imports the stage's
    _run(config, work)
    relabelled = pipeline.build_from_work(config, work, tmp_path / "dataset").path
    for name in ("reports", "sentences", "labels"):
        assert set(_table(relabelled, name)["producer"]) == {changed}, name
    assert json.loads((relabelled / "manifest.json").read_text())["producers"]["labels"] == [changed]


def test_changed_report_rules_redo_the_reports(built, tmp_path, monkeypatch):
    # the rules' digest is part of the reports key: tables cached under old rules are not reused
    config, folder, _, _ = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    before = {p.name for p in (work / "reports").glob("*/*")}
    _run(config, work)
    assert {p.name for p in (work / "reports").glob("*/*")} == before
    monkeypatch.setattr(pipeline, "REPORTS_PRODUCER", "rules-changed")
    _run(config, work)
    assert len({p.name for p in (work / "reports").glob("*/*")} - before) == 1


def test_a_schema_bump_redoes_the_stages_storing_that_table_and_no_other(built, tmp_path, monkeypatch):
    # a stored result follows the schema of the run that stored it: after a bump of anatomy_stats the build
    # would write old masks' rows under the new version, so the anatomy stage (only it) computes them again
    config, folder, _, _ = built
    work = tmp_path / "work"
    shutil.copytree(folder / "work", work)
    stages = ("ingest", "anatomy", "text", "reports", "export", "study")
    before = {stage: {p.name for p in (work / stage).glob("*/*")} for stage in stages}
    real = pipeline.load_schema
    monkeypatch.setattr(pipeline, "load_schema",
                        lambda name: dataclasses.replace(real(name), version=real(name).version + 1)
                        if name == "anatomy_stats" else real(name))
    _run(config, work)
    after = {stage: {p.name for p in (work / stage).glob("*/*")} for stage in stages}
    new = {stage: after[stage] - before[stage] for stage in stages}
    assert new["anatomy"] and len(new["anatomy"]) == len(before["anatomy"])
    # the text results are keyed by the anatomy result they read
    assert {stage for stage in stages if new[stage]} == {"anatomy", "text"}


def test_names_from_the_dicom_headers_are_scrubbed_from_reports(tmp_path):
    # the RIS export gives no name here, and the report names the patient without a title
    export = tmp_path / "export"
    truth = generate_export(export, patients=1, seed=5, phi=False, language="en", matrix=64, n_slices=24)
    family = str(pydicom.dcmread(export / truth.series[0].files[0], stop_before_pixels=True).PatientName).split("^")[0]
    with open(export / "reports.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["patient_name"] = ""
        row["report_text"] += f" Discussed with {family} today."
    with open(export / "reports.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pipeline.plan_export(_config(tmp_path, export), tmp_path / "work")
    [table] = (tmp_path / "work" / "reports").glob("*/*/reports.parquet")
    texts = pq.read_table(table).column("text").to_pylist()
    assert texts and all(text.endswith("Discussed with [NAME] today.") for text in texts)

def test_a_study_without_a_ris_report_takes_its_dicom_sr_report(tmp_path):
    # the PACS export holds the report of one study as a Basic Text SR; the RIS export lacks its row
    from ctcorpus.synth.dicom import SeriesHeader, uid, write_sr_report

    export = tmp_path / "export"
    truth = generate_export(export, patients=1, seed=5, language="en", matrix=64, n_slices=24)
    first = pydicom.dcmread(export / truth.series[0].files[0], stop_before_pixels=True)
    with open(export / "reports.csv", encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["accession_number"] != first.AccessionNumber]
    with open(export / "reports.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["accession_number", "patient_id", "patient_name", "study_date",
                                                    "report_text", "language"])
        writer.writeheader()
        writer.writerows(rows)
    header = SeriesHeader(first.PatientID, str(first.PatientName), "", "F", first.StudyInstanceUID, first.StudyDate,
                          "101500", first.AccessionNumber, uid(first.StudyInstanceUID, "report"), 77, "Report", "", "", "",
                          "", 0.0, (0.0, 0.0))
    sr_file = f"PAT_{first.PatientID}/REPORT/SR1"
    # the finding is inferred from a slice of the study: cited as a report cites it, and mined as a snippet
    axial = next(s for s in truth.series if s.kind == "axial" and s.study_uid == first.StudyInstanceUID)
    cited = pydicom.dcmread(export / axial.files[len(axial.files) // 2], stop_before_pixels=True)
    write_sr_report(export / sr_file, header, [("Findings", [("Moderate right pleural effusion.", [cited.SOPInstanceUID])]),
                                               ("Impression", ["Pleural effusion."])])
    config = _config(tmp_path, export)
    plan = pipeline.plan_export(config, tmp_path / "work")
    [folder] = (tmp_path / "work" / "reports").glob("*/*")
    reports = pq.read_table(folder / "reports.parquet").to_pandas()
    (sr,) = reports[reports["link_method"] == "dicom_sr"].itertuples()
    assert len(reports) == len(rows) + 1 and first.PatientID not in sr.source_path and sr.source_path.endswith("/REPORT/SR1")
    assert f"effusion (series {cited.SeriesNumber}, image {cited.InstanceNumber})." in sr.text
    (unit,) = [u for u in plan.units if u.report is not None and u.report.report_id == sr.report_id]
    assert dict(unit.report.labels)["pleural_effusion"] == "positive"
    quarantine = pq.read_table(folder / "quarantine.parquet").to_pandas()
    assert set(quarantine["reason"]) <= {"no_report"} and unit.unit_id not in set(quarantine["item_id"])
    pipeline.record_run(plan, [pipeline.process_unit(u, config, tmp_path / "work") for u in plan.units], tmp_path / "work")
    snippets = _table(pipeline.build_from_work(config, tmp_path / "work", tmp_path / "dataset").path, "snippets")
    (snippet,) = snippets[snippets["report_id"] == sr.report_id].itertuples()
    assert (snippet.series_number, snippet.image_number) == (cited.SeriesNumber, cited.InstanceNumber)
    assert snippet.z_mm == pytest.approx(float(cited.ImagePositionPatient[2]))


def _copy_patients(truth, source: Path, target: Path, patients: set[str]) -> None:
    for series in truth.series:
        if series.patient_id in patients:
            for rel in series.files:
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / rel, target / rel)
    for name in ("reports.csv",):
        shutil.copy2(source / name, target / name)


def _two_of_three_patients(tmp_path: Path):
    """A synthetic export of three patients (in ``full``) and an export folder holding the first
    two patients' files: (truth, full, export, the patient ids sorted)."""
    source = tmp_path / "full"
    truth = generate_export(source, patients=3, seed=11)
    patients = sorted({s.patient_id for s in truth.series})
    export = tmp_path / "export"
    _copy_patients(truth, source, export, set(patients[:2]))
    return truth, source, export, patients


def _texts_analyzed(monkeypatch) -> list[str]:
    """The report texts the reports stage analyzes from now on (not those it reuses)."""
    from ctcorpus.reports import stage

    analyzed, analyze = [], stage.analyze_reports

    def recorded(analyzer, reports):
        reports = list(reports)
        analyzed.extend(report.text for report in reports)
        return analyze(analyzer, reports)

    monkeypatch.setattr(stage, "analyze_reports", recorded)
    return analyzed


def test_new_studies_are_processed_alone_and_old_patients_keep_their_split(tmp_path, monkeypatch):
    truth, source, export, patients = _two_of_three_patients(tmp_path)
    config = _config(tmp_path, export)
    work = tmp_path / "work"
    first = _run(config, work)
    before = pipeline.build_from_work(config, work, tmp_path / "v1").splits
    reports_before = pq.read_table(tmp_path / "v1" / "tables" / "reports").to_pylist()
    _copy_patients(truth, source, export, {patients[2]})
    analyzed = _texts_analyzed(monkeypatch)
    second = _run(config, work)
    after = pipeline.build_from_work(config, work, tmp_path / "v2").splits
    new_studies = {s.study_uid for s in truth.series if s.patient_id == patients[2] and s.kind == "axial"}
    # the reports: only the new patient's are analyzed; the others' rows come from the first run, unchanged
    reports_after = pq.read_table(tmp_path / "v2" / "tables" / "reports").to_pylist()
    assert len(analyzed) == len(reports_after) - len(reports_before) > 0
    assert all(row in reports_after for row in reports_before)
    assert second.computed.get("ingest") == len(new_studies)
    assert second.cached.get("ingest") == first.computed.get("ingest")
    assert all(after[p] == split for p, split in before.items())
    assert len(after) == len(before) + 1


def test_a_report_export_grown_by_a_new_study_s_rows_redoes_the_text_stage_of_that_study_alone(tmp_path):
    # a nightly cumulative RIS export: its rows carry its sha256, which each added row changes; the text stage's key
    # held it, so every study with a report in it had its snippets, fingerprint and samples row made anew each night
    truth, source, export, patients = _two_of_three_patients(tmp_path)
    with open(source / "reports.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)

    def write(mode: str, patient_ids: set[str]) -> None:
        with open(export / "reports.csv", mode, newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fields)
            if mode == "w":
                writer.writeheader()
            writer.writerows(row for row in rows if row["patient_id"] in patient_ids)

    write("w", set(patients[:2]))
    config = _config(tmp_path, export)
    first = _run(config, tmp_path / "work")
    _copy_patients(truth, source, export, {patients[2]})  # the new study's files (and the full export: rewritten)
    write("w", set(patients[:2]))
    write("a", {patients[2]})  # its report row appended
    grown = _run(config, tmp_path / "work")
    assert grown.computed["text"] == grown.volumes - first.volumes > 0
    assert grown.cached["text"] == first.computed["text"]
    # provenance: the rows made before name the grown export, as a fresh run's do
    _run(config, tmp_path / "fresh")
    built = [pipeline.build_from_work(config, tmp_path / work, tmp_path / f"{work}-dataset" / "v1") for work in ("work", "fresh")]
    assert len({(result.path / "manifest.json").read_bytes() for result in built}) == 1
    stacks = _table(built[0].path, "series").set_index("stack_id")["source_sha256"]
    export_sha256 = sha256_file(export / "reports.csv")
    for sample in _table(built[0].path, "samples").itertuples():  # every study has a report
        assert sample.source_sha256 == sha256_of_hashes([stacks[sample.volume_id], export_sha256])


def test_a_moved_export_names_its_report_files_where_they_now_are(tmp_path):
    # the reports stage names each row's export by its path: its result reused after a move named the old one
    _, _, export, _ = _two_of_three_patients(tmp_path)  # reports.csv holds reports of a patient not exported: orphans
    work = tmp_path / "work"
    pipeline.plan_export(_config(tmp_path, export), work)
    moved = export.rename(tmp_path / "moved")
    plan = pipeline.plan_export(_config(tmp_path, moved), work)
    quarantine = pq.read_table(pipeline.WorkStore(work).path("reports", plan.reports_key) / "quarantine.parquet")
    assert set(quarantine["path"].to_pylist()) == {str(moved / "reports.csv")}


def test_a_series_folder_renamed_in_the_export_gets_its_new_paths_in_the_instances_table(tmp_path):
    # the same files under another folder: an instances table reused by their hashes named the old paths
    truth, _, export, patients = _two_of_three_patients(tmp_path)
    work = tmp_path / "work"
    config = _config(tmp_path, export)
    pipeline.plan_export(config, work)
    axial = next(s for s in truth.series if s.patient_id == patients[0] and s.kind == "axial")
    folder = (export / axial.files[0]).parent
    folder.rename(folder.with_name(f"{folder.name}_renamed"))
    plan = pipeline.plan_export(config, work)
    instances = pq.read_table(pipeline.WorkStore(work).path("export", plan.export_key) / "instances.parquet")
    assert sum(f"{folder.name}_renamed/" in path for path in instances["path"].to_pylist()) == len(axial.files)


def test_a_series_folder_renamed_between_runs_gets_its_new_paths_in_the_slices_table(tmp_path):
    # the volumes' ingest results were reused by the files' hashes: their slice rows named the old folder
    truth, _, export, patients = _two_of_three_patients(tmp_path)
    config = _config(tmp_path, export)
    work = tmp_path / "work"
    _run(config, work)
    for folder in {(export / f).parent for s in truth.series if s.patient_id == patients[0] for f in s.files}:
        folder.rename(folder.with_name(f"{folder.name}_renamed"))
    _run(config, work)
    pipeline.build_from_work(config, work, tmp_path / "v2")
    slices = set(_table(tmp_path / "v2", "slices")["path"])
    assert any("_renamed/" in path for path in slices)
    assert slices <= set(_table(tmp_path / "v2", "instances")["path"])


def test_a_changed_volume_selection_ingests_and_segments_only_the_stacks_it_adds(tmp_path):
    # volumes_per_study only chooses the stacks that become volumes: a switch to "all" re-segmented every volume; the
    # volumes kept are mined anew, as a fresh run mines them (a bare image number names no series among several)
    _, _, export, _ = _two_of_three_patients(tmp_path)
    with open(export / "reports.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    with open(export / "reports.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows({**row, "report_text": f"{row['report_text']}\nSmall nodule in the right lower lobe (image 20)."}
                         for row in rows)
    config = _config(tmp_path, export)
    data = config.model_dump(mode="json")
    data["ingest"]["volumes_per_study"] = "all"
    every = config_from_dict(data)
    first = _run(config, tmp_path / "work")
    switched = _run(every, tmp_path / "work")
    assert switched.cached["ingest"] == first.computed["ingest"] and switched.cached["anatomy"] == first.computed["anatomy"]
    assert switched.computed["anatomy"] == switched.volumes - first.volumes > 0
    _run(every, tmp_path / "fresh")
    built = [pipeline.build_from_work(every, tmp_path / work, tmp_path / f"{work}-dataset" / "v1") for work in ("work", "fresh")]
    assert len({(result.path / "manifest.json").read_bytes() for result in built}) == 1


def test_a_previous_reports_result_that_no_longer_reads_is_not_reused(tmp_path):
    # stored by a version whose tables had other columns: analyzed afresh, with a warning
    folder = tmp_path / "reports" / "ab" / "abc"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"report_id": ["r1"]}), folder / "reports.parquet")
    settings = analysis_settings(ReportsConfig())
    (folder / pipeline._analysis_keys_name(settings)).write_text('{"r1": "k"}', encoding="utf-8")
    assert pipeline._latest_reports(pipeline.WorkStore(tmp_path), settings) is None
    assert pipeline._latest_reports(pipeline.WorkStore(tmp_path / "empty"), settings) is None


def test_a_run_reuses_the_analyses_stored_under_its_own_rules_and_config(tmp_path, monkeypatch):
    # A site tries a config, then goes back to its own: the newest stored result holds no analysis
    # the run can use (and is not loaded); the one stored under the same settings is reused.
    truth, source, export, patients = _two_of_three_patients(tmp_path)
    config = _config(tmp_path, export)
    trial = config.model_copy(update={"reports": config.reports.model_copy(
        update={"extra_synonyms": {"lung_nodule": ("granuloma",)}})})
    work = tmp_path / "work"
    analyzed = _texts_analyzed(monkeypatch)
    pipeline.plan_export(config, work)
    first = len(analyzed)
    pipeline.plan_export(trial, work)
    assert first > 0 and len(analyzed) == 2 * first  # other settings: every report analyzed again
    _copy_patients(truth, source, export, {patients[2]})
    analyzed.clear()
    pipeline.plan_export(config, work)
    assert 0 < len(analyzed) < first  # the new patient's reports only: the first run's analyses are reused


RESUME_SCRIPT = """
import sys
from pathlib import Path
from ctcorpus import pipeline
from ctcorpus.config import load_config
config = load_config(sys.argv[1])
work = Path(sys.argv[2])
plan = pipeline.plan_export(config, work)
outcomes = [pipeline.process_unit(u, config, work) for u in plan.units]
pipeline.record_run(plan, outcomes, work)
"""


def test_sigkill_midway_then_rerun_gives_the_uninterrupted_manifest(defects_export, built, tmp_path):
    import yaml

    config, folder, _, result = built
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    work = tmp_path / "work"
    command = [sys.executable, "-c", RESUME_SCRIPT, str(config_path), str(work)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (work / "ingest").is_dir() and any((work / "ingest").glob("*/*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / pipeline.RUN_INDEX).exists()  # it really died mid-way
    subprocess.run(command, env=env, check=True)
    resumed = pipeline.build_from_work(config, work, tmp_path / "dataset")
    assert (resumed.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()
    assert not list(work.rglob(".tmp-*"))


BUILD_KILLED_AT = """
import os, signal, sys
from pathlib import Path
import webdataset
from ctcorpus import pipeline
from ctcorpus.config import load_config
from ctcorpus.outputs import dataset

config, work, out, point = load_config(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
calls = []

def killing(real, at):
    def call(*args, **kwargs):
        calls.append(args)
        if at(args):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

if point == "table":  # the second table file, the first one written
    dataset.write_parquet = killing(dataset.write_parquet, lambda args: len(calls) == 2)
elif point == "shard":  # a shard's tar written in part
    webdataset.TarWriter.write = killing(webdataset.TarWriter.write, lambda args: len(calls) == 2)
elif point == "manifest":  # the new manifest complete under its temporary name
    os.replace = killing(os.replace, lambda args: str(args[0]).endswith("-manifest.json"))
else:  # between the renames: the old version moved aside, the new one not yet in its place
    os.replace = killing(os.replace, lambda args: Path(args[1]) == out)
pipeline.build_from_work(config, work, out)
"""


@pytest.mark.parametrize("point", ["table", "shard", "manifest", "swap"])
def test_a_build_killed_while_writing_leaves_the_last_version_and_the_next_build_completes(built, tmp_path, point):
    import yaml

    from ctcorpus.errors import OutputError
    from ctcorpus.outputs import verify_dataset

    config, folder, _, result = built
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    out = tmp_path / "dataset"
    shutil.copytree(result.path, out)  # the version the scheduled rebuild replaces
    killed = subprocess.run([sys.executable, "-c", BUILD_KILLED_AT, str(config_path), str(folder / "work"), str(out), point],
                            check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert killed.returncode == -signal.SIGKILL and list(tmp_path.glob(".tmp-*"))  # it died mid-build
    if point == "swap":  # the old version is the only copy, aside: readers say where, the next build puts it back
        with pytest.raises(OutputError, match="moving this version aside"):
            verify_dataset(out)
    else:
        assert verify_dataset(out) == []
        assert (out / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()
    rebuilt = pipeline.build_from_work(config, folder / "work", out)  # no cleanup by hand
    assert (rebuilt.path / "manifest.json").read_bytes() == (result.path / "manifest.json").read_bytes()
    assert verify_dataset(out) == [] and not list(tmp_path.rglob(".tmp-*"))


def _audit(config: CorpusConfig, folder: Path):
    from ctcorpus.audit import audit_corpus, load_corpus_tables

    _run(config, folder / "work")
    dataset = pipeline.build_from_work(config, folder / "work", folder / "dataset").path
    return audit_corpus(load_corpus_tables(dataset)), load_corpus_tables(dataset)


def _corpus_ids(leak, config: CorpusConfig, volumes) -> tuple[str, ...]:
    from ctcorpus.ingest import pseudonymizer_for

    p = pseudonymizer_for(config.ingest)
    if leak.id_kind == "patient_id":
        return tuple(sorted(p.patient(i) for i in leak.ids))
    if leak.id_kind == "accession_number":
        return tuple(sorted(p.accession(i) for i in leak.ids))
    if leak.id_kind == "series_uid":
        by_series = dict(zip(volumes["series_id"], volumes["volume_id"]))
        return tuple(sorted(by_series[p.series(i)] for i in leak.ids))
    return leak.ids


def test_audit_finds_every_seeded_leak_end_to_end_and_none_on_a_clean_export(tmp_path):
    from ctcorpus.audit import LEAK_KINDS, FindingKind
    from ctcorpus.synth.leaks import match_leaks, seed_export_leaks

    clean = tmp_path / "clean" / "export"
    generate_export(clean, patients=4, seed=2, phi=True)
    result, _ = _audit(_config(tmp_path / "clean", clean), tmp_path / "clean")
    assert [f for f in result.findings if f.kind in LEAK_KINDS] == []

    leaky = tmp_path / "leaky" / "export"
    generate_export(leaky, patients=4, seed=2, phi=True)
    seeded = seed_export_leaks(leaky, seed=2)
    config = _config(tmp_path / "leaky", leaky)
    result, tables = _audit(config, tmp_path / "leaky")
    mapped = [
        type(leak)(leak.kind, _corpus_ids(leak, config, tables.volumes), leak.detail) for leak in seeded
    ]
    score = match_leaks(result.findings, mapped)
    assert score.total == len(seeded) >= 3
    assert score.found == score.total, score.missed
    # the person re-identified under a new id has two scans of one body, one under each id: where
    # they happen to look alike (both without contrast), the audit also finds them as near-identical
    # volumes across the splits, which is that same leak, not another one
    (person,) = [leak.ids for leak in mapped if leak.kind is FindingKind.SAME_PERSON_TWO_IDS]
    body = set(tables.volumes.loc[tables.volumes["patient_id"].isin(person), "volume_id"])
    other = [f for f in score.false_findings if not (f.kind is FindingKind.NEAR_DUPLICATE_VOLUME and set(f.ids) <= body)]
    assert other == [], other


def test_report_json_keeps_every_section_of_a_name() -> None:
    # a report with a findings section per region: report.json's sections kept the abdomen's alone
    text = "FINDINGS: Nodule.\nIMPRESSION: Nodule.\nFINDINGS: Liver cyst.\n"
    sections = (("findings", 10, 18), ("impression", 30, 38), ("findings", 48, len(text)))
    report = pipeline.StudyReport("r1", "en", text, sections, (), ())
    assert pipeline._report_json(report)["sections"] == {"findings": "Nodule.\n\nLiver cyst.", "impression": "Nodule.\n"}


def test_a_bare_image_number_names_the_volume_series_only_in_a_study_of_one_volume() -> None:
    # volumes_per_study: all: each volume mined "image 45" of its own series, all pairs but one wrong
    stack = SimpleNamespace(first=SimpleNamespace(series_number=3))
    one = pipeline.StudyUnit("s1", "p1", (), (("a", "b"),), None, "")
    several = pipeline.StudyUnit("s1", "p1", (), (("a",), ("b",)), None, "")
    assert pipeline._bare_image_series(one, stack) == 3
    assert pipeline._bare_image_series(several, stack) is None


@pytest.mark.parametrize("error", [MemoryError(), IndexError("index 512 is out of bounds for axis 0 with size 512")])
def test_a_stack_failing_with_any_error_is_quarantined_and_its_study_falls_back_to_its_next_stack(tmp_path, monkeypatch,
                                                                                                  error):
    # a stack too large for the worker's memory (or one no check foresaw) raised out of its study: the study
    # failed after retries, its other reconstruction, its report and its series rows with it, and the run failed
    config, work, plan, stack, recon = _one_study(tmp_path)
    unit = plan.units[0]
    _fail_resampling(monkeypatch, stack, error)
    summary = _run(config, work)
    assert summary.failed == 0 and summary.volumes == len(plan.units)
    quarantine = _private_quarantine(work)
    (row,) = quarantine.query("reason == 'stage_failed'").itertuples()
    assert row.path == stack.first.rel_path and type(error).__name__ in row.message
    assert f"series {stack.first.series_number} " in row.message and "the next run assembles it again" in row.message
    result = pipeline.build_from_work(config, work, tmp_path / "v1")
    volumes = _table(result.path, "volumes")
    assert list(volumes[volumes["study_id"] == unit.unit_id]["series_number"]) == [recon.series_number]
    # one that always fails is tried by the next runs (the fallback's results reused), then kept
    _assert_retried_then_kept(config, work)

    def interrupted(volume, config):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_pipeline, "resample_volume", interrupted)  # a Ctrl-C is no stack's fault
    with pytest.raises(KeyboardInterrupt):
        ingest_pipeline.ingest_stack(stack, config.ingest)


def test_a_stack_that_ran_out_of_memory_is_assembled_by_the_next_run_once_it_can(tmp_path, monkeypatch):
    # its failure was stored as the stack's result: raising the workers' memory and re-running kept
    # the fallback volume until the export changed
    config, work, plan, stack, _ = _one_study(tmp_path)
    unit = plan.units[0]
    real = _fail_resampling(monkeypatch, stack, MemoryError())
    _run(config, work)
    monkeypatch.setattr(ingest_pipeline, "resample_volume", real)
    recovered = _run(config, work)
    assert recovered.computed == {"ingest": 1, "anatomy": 1, "text": 1, "study": 1}
    result = pipeline.build_from_work(config, work, tmp_path / "v1")
    volumes = _table(result.path, "volumes")
    assert list(volumes[volumes["study_id"] == unit.unit_id]["series_number"]) == [stack.first.series_number]
    assert "stage_failed" not in set(_table(result.path, "quarantine")["reason"])
    assert _run(config, work).computed == {}


def test_a_volume_whose_structure_stats_run_out_of_memory_is_stored_without_a_mask_and_its_study_kept(tmp_path, monkeypatch):
    # only the segmenter's errors were caught: one raised after it (the stats of a large volume) failed
    # the study after retries, its volumes, report and series rows with it
    export = tmp_path / "export"
    generate_export(export, patients=1, seed=7, language="en", matrix=64, n_slices=24)
    config, work = _config(tmp_path, export), tmp_path / "work"

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.2 GiB")

    monkeypatch.setattr(pipeline, "structure_stats", out_of_memory)
    summary = _run(config, work)
    assert summary.failed == 0 and summary.volumes == summary.studies > 0
    failed = _private_quarantine(work).query("reason == 'segmentation_failed'")
    assert len(failed) == summary.volumes
    assert all("MemoryError: Unable to allocate 3.2 GiB" in m and "the next run segments it again" in m for m in failed["message"])


@pytest.mark.parametrize(("module", "name", "step"), [(ingest_pipeline, "slice_rows", "making its table rows"),
                                                      (pipeline, "volume_fingerprint", "storing the volume"),
                                                      (pipeline, "encode_array", "storing the volume")])
def test_a_stack_whose_rows_or_stored_volume_fail_is_quarantined_and_its_study_falls_back(tmp_path, monkeypatch, module, name,
                                                                                         step):
    # only assembly and resampling were caught: an error after them (its slice rows, its fingerprint or
    # its encoding out of memory) failed the study after retries, its other stacks and report with it
    config, work, plan, stack, recon = _one_study(tmp_path)
    unit = plan.units[0]
    current, real_ingest, real = [""], pipeline.ingest_stack, getattr(module, name)

    def ingesting(s, *args):
        current[0] = s.stack_key
        return real_ingest(s, *args)

    def failing(*args):
        if current[0] == stack.stack_key:
            raise MemoryError("Unable to allocate 1.1 GiB")
        return real(*args)

    monkeypatch.setattr(pipeline, "ingest_stack", ingesting)
    monkeypatch.setattr(module, name, failing)
    summary = _run(config, work)
    assert summary.failed == 0 and summary.volumes == len(plan.units)
    (row,) = _private_quarantine(work).query("reason == 'stage_failed'").itertuples()
    assert row.path == stack.first.rel_path and f"{step} failed (MemoryError: Unable to allocate 1.1 GiB)" in row.message
    assert "the next run assembles it again" in row.message
    volumes = _table(pipeline.build_from_work(config, work, tmp_path / "v1").path, "volumes")
    assert list(volumes[volumes["study_id"] == unit.unit_id]["series_number"]) == [recon.series_number]
    _assert_retried_then_kept(config, work)


@pytest.mark.parametrize(("name", "error"), [("mine_snippets", SnippetError("volume 'v' has a singular direction/spacing matrix")),
                                             ("sentence_region", KeyError("lung"))])
def test_a_volume_whose_snippets_fail_is_stored_without_them_and_its_study_kept(tmp_path, monkeypatch, name, error):
    # an error of the text stage (a singular direction matrix, any other) failed the study after retries,
    # its volumes and report with it
    export = tmp_path / "export"
    generate_export(export, patients=1, seed=7, language="en", matrix=64, n_slices=24)
    config, work = _config(tmp_path, export), tmp_path / "work"

    def failing(*args, **kwargs):
        raise error

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, name, interrupted)  # a Ctrl-C is no volume's fault
    with pytest.raises(KeyboardInterrupt):
        _run(config, work)
    monkeypatch.setattr(pipeline, name, failing)
    summary = _run(config, work)
    assert summary.failed == 0 and summary.volumes == summary.studies > 0
    failed = _private_quarantine(work).query("reason == 'stage_failed'")
    assert len(failed) == summary.volumes and set(failed["stage"]) == {"snippets"}
    assert all(f"failed ({type(error).__name__}: " in m and "the next run mines it again" in m for m in failed["message"])
    dataset = pipeline.build_from_work(config, work, tmp_path / "v1").path
    samples = _table(dataset, "samples")
    assert len(samples) == summary.volumes and samples["in_shards"].all() and (samples["n_snippets"] == 0).all()
    assert set(failed["item_id"]) == set(samples["volume_id"])
    assert len(_table(dataset, "reports")) >= summary.studies
    # one that always fails is mined by the next runs (the volume's other results reused), then kept
    runs = [_run(config, work).computed for _ in range(pipeline.STAGE_ATTEMPTS)]
    assert runs == [{"text": summary.volumes}] * (pipeline.STAGE_ATTEMPTS - 1) + [{}]
    assert all(f"failed in {pipeline.STAGE_ATTEMPTS} runs, kept so" in m
               for m in _private_quarantine(work).query("reason == 'stage_failed'")["message"])
