"""The Prefect flows, in-process: expected tables, Dask parity with the serial run, retries and
quarantine on failure, and the CLI/flow smoke test."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from ctcorpus import pipeline
from ctcorpus.cli import app, demo_config
from ctcorpus.errors import ConfigError, CtCorpusError, IncompleteRunError, IngestError, OutputError
from ctcorpus.synth import generate_export


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flows")
    generate_export(folder / "export", patients=2, seed=5, defects=False, language="en")
    config = demo_config(folder)
    config["anatomy"] = {"backend": "threshold"}
    config["run"]["n_workers"] = 2
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return folder, path


def _manifest(dataset: Path) -> bytes:
    return (dataset / "manifest.json").read_bytes()


def test_an_ingest_run_overlapping_a_running_one_fails_and_leaves_its_work_alone(setup, tmp_path):
    # a schedule starts the next run while the last one still writes: the new run removed its results in progress
    from flows.ingest import ingest_export

    _, config = setup
    store = pipeline.WorkStore(tmp_path / "work")
    with store.exclusive(), store.writing("ingest", "ab" * 32) as running:
        (running / "hu.npy.zst").write_bytes(b"x")
        with pytest.raises(OutputError, match="another process is writing it"):
            ingest_export(config_path=str(config), work_dir=str(store.root), parallel=False)
        assert (running / "hu.npy.zst").exists()


def test_flows_produce_tables_and_dask_matches_serial(setup, capfd):
    from flows.audit import audit_dataset
    from flows.build import build_dataset
    from flows.ingest import ingest_export

    folder, config = setup
    serial_out, dask_out = folder / "serial" / "v1", folder / "dask" / "v1"  # the folder name is the version
    serial = ingest_export(config_path=str(config), work_dir=str(folder / "work-serial"), parallel=False)
    assert serial["failed"] == 0 and serial["volumes"] > 0
    built = build_dataset(config_path=str(config), work_dir=str(folder / "work-serial"), out_dir=str(serial_out))
    tables = {p.name for p in (serial_out / "tables").iterdir()}
    assert {"instances", "series", "volumes", "slices", "reports", "sentences", "labels", "snippets",
            "anatomy_stats", "samples", "quarantine"} <= tables
    assert built["files"] > len(tables) and built["changes"] == "a first version at this path"
    again = build_dataset(config_path=str(config), work_dir=str(folder / "work-serial"), out_dir=str(serial_out))
    assert again["changes"] == "unchanged, byte-identical to the version it replaced"  # a scheduled build says so

    parallel = ingest_export(config_path=str(config), work_dir=str(folder / "work-dask"), parallel=True)
    assert parallel["computed"] == serial["computed"]
    capfd.readouterr()
    build_dataset(config_path=str(config), work_dir=str(folder / "work-dask"), out_dir=str(dask_out), show_progress=True)
    assert _manifest(dask_out) == _manifest(serial_out)
    # `ctcorpus build` showed nothing for many minutes where ingest shows its progress
    shown = re.findall(_TIMED, capfd.readouterr().err, re.MULTILINE)
    studies = parallel["studies"]  # fewer than 10: a line for each
    assert shown == [f"studies read={n}/{studies}" for n in range(1, studies + 1)] + ["writing tables and shards"]

    audit = audit_dataset(dataset_dir=str(serial_out), out_dir=str(folder / "audit"), config_path=str(config))
    assert Path(audit["html"]).is_file() and json.loads(Path(audit["json"]).read_text())
    with pytest.raises(ConfigError, match=r"out_dir \(--out; default: .*\): cannot create this folder: File exists"):
        audit_dataset(dataset_dir=str(serial_out), out_dir=str(config), config_path=str(config))  # a file


def test_relative_paths_reach_the_workers_of_an_existing_cluster(setup, tmp_path, monkeypatch):
    # an existing cluster's workers run in a folder of their own: there a relative export path
    # named no file (every stack was rejected, exit 0) and the work store was written beside them
    from distributed import LocalCluster

    from flows.ingest import ingest_export

    folder, config = setup
    workers_folder = tmp_path / "workers"
    workers_folder.mkdir()
    monkeypatch.chdir(workers_folder)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.chdir(folder)
        summary = ingest_export(config_path=str(config), export_dir="export", report_files=["export/reports.csv"],
                                work_dir="work-relative", dask_address=cluster.scheduler_address)
    assert summary["failed"] == 0 and summary["volumes"] > 0
    assert (folder / "work-relative" / pipeline.RUN_INDEX).is_file() and not any(workers_folder.iterdir())


def test_a_flow_config_names_the_segmentation_weights_absolutely(tmp_path, monkeypatch):
    # the workers of an existing cluster run in folders of their own: relative weights named none there
    from flows.common import load_flow_config

    config = tmp_path / "ctcorpus.yaml"
    config.write_text("anatomy:\n  weights_path: weights/nnunet\n  home_dir: tsh\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    loaded, _ = load_flow_config(str(config), export_dir="export")
    assert loaded.anatomy.weights_path == tmp_path / "weights" / "nnunet" and loaded.anatomy.home_dir == tmp_path / "tsh"
    assert load_flow_config(None)[0].anatomy.weights_path is None


def test_a_tilde_in_a_config_path_is_the_users_home(tmp_path, monkeypatch):
    """YAML keeps `~` as text: `output_dir: ~/ctcorpus` wrote the work store and Prefect's home into a folder
    named '~' of the working folder, and `export_dir: ~/export` named no folder, refused before any work."""
    from flows.common import load_flow_config
    from flows.runtime import prefect_environment

    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    (home / "export").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    config = tmp_path / "ctcorpus.yaml"
    config.write_text("run:\n  export_dir: ~/export\n  report_files: ~/ris/reports.csv\n  output_dir: ~/ctcorpus\n"
                      "anatomy:\n  weights_path: ~/weights\n", encoding="utf-8")
    loaded, work = load_flow_config(str(config))
    assert pipeline.export_root(loaded.run) == home / "export"  # the CLI's check before Prefect starts
    assert loaded.run.report_files == (home / "ris" / "reports.csv",)
    assert work == home / "ctcorpus" / "work" and loaded.anatomy.weights_path == home / "weights"
    assert prefect_environment(loaded.run)["PREFECT_HOME"] == str(home / "ctcorpus" / ".prefect")


def test_the_default_audit_folder_is_beside_the_dataset_however_it_is_named(tmp_path, monkeypatch):
    """`ctcorpus audit .` in a dataset folder wrote its report into the dataset, as `-audit`, which `verify`
    then reported as files the manifest does not list; `ctcorpus audit ..` wrote `..-audit`."""
    from flows.audit import default_audit_dir

    dataset = tmp_path / "out" / "dataset" / "v1"
    (dataset / "tables").mkdir(parents=True)
    (tmp_path / "current").symlink_to(dataset)  # a link is named as the user names it
    monkeypatch.chdir(dataset)
    assert default_audit_dir(Path(".")) == tmp_path / "out" / "dataset" / "v1-audit"
    monkeypatch.chdir(dataset / "tables")
    assert default_audit_dir(Path("..")) == tmp_path / "out" / "dataset" / "v1-audit"
    monkeypatch.chdir(tmp_path)
    assert default_audit_dir(Path("current")) == tmp_path / "current-audit"
    assert default_audit_dir(Path("out/dataset/v1/")) == tmp_path / "out" / "dataset" / "v1-audit"


def test_a_cluster_without_workers_stops_the_run_instead_of_hanging(setup, tmp_path):
    # an existing cluster whose workers all died: each study waited for one forever
    from distributed import LocalCluster

    from flows.common import ClusterLostError
    from flows.ingest import ingest_export

    _, config = setup
    data = yaml.safe_load(config.read_text())
    data["run"]["dask_no_worker_timeout_s"] = 0.5
    patient = tmp_path / "config.yaml"
    patient.write_text(yaml.safe_dump(data))
    with (LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
          pytest.raises(ClusterLostError, match=r"has had no worker for 0.5 s \(run.dask_no_worker_timeout_s\)")):
        ingest_export(config_path=str(patient), work_dir=str(tmp_path / "work"), dask_address=cluster.scheduler_address)
    assert not (tmp_path / "work" / pipeline.RUN_INDEX).exists()  # no study quarantined for the cluster's fault


def test_an_unreachable_dask_scheduler_fails_the_run_before_the_export_is_indexed(setup, tmp_path, monkeypatch):
    """A scheduled run against a scheduler that is down indexed the whole export (hours on a large one) before
    it failed on the address."""
    import socket

    from flows.ingest import ingest_export

    _, config = setup
    data = yaml.safe_load(config.read_text())
    data["run"]["dask_connect_timeout_s"] = 1.0
    unreachable = tmp_path / "config.yaml"
    unreachable.write_text(yaml.safe_dump(data))
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
    planned = []
    monkeypatch.setattr(pipeline, "plan_export", lambda *args: planned.append(args))
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler") as info:
        ingest_export(config_path=str(unreachable), work_dir=str(tmp_path / "work"), dask_address=address)
    assert info.value.path == address and planned == []


def test_a_ctcorpus_error_of_planning_or_building_is_not_retried(setup, tmp_path, monkeypatch):
    """A missing export folder or a work store without an ingest run is raised at once: a retry met the
    same error after a delay, and Prefect logged it (with its traceback) once per try."""
    from flows.build import build_dataset
    from flows.ingest import ingest_export

    _, config = setup
    data = yaml.safe_load(config.read_text())
    data["run"]["export_dir"] = None
    no_export = tmp_path / "no-export.yaml"
    no_export.write_text(yaml.safe_dump(data))
    calls = {"plan": 0, "build": 0}

    def counted(name, real):
        def call(*args):
            calls[name] += 1
            return real(*args)
        return call

    monkeypatch.setattr(pipeline, "plan_export", counted("plan", pipeline.plan_export))
    monkeypatch.setattr(pipeline, "build_from_work", counted("build", pipeline.build_from_work))
    with pytest.raises(IngestError, match="no export folder"):
        ingest_export(config_path=str(no_export), work_dir=str(tmp_path / "work"), parallel=False)
    with pytest.raises(CtCorpusError, match="no ingest run recorded here"):
        build_dataset(config_path=str(config), work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "v1"))
    assert calls == {"plan": 1, "build": 1}


def test_transient_failure_is_retried_and_permanent_failure_quarantined(setup, monkeypatch):
    from flows.ingest import ingest_export

    folder, config = setup
    ids = [u.unit_id for u in pipeline.plan_export(pipeline_config(config), folder / "work-plan").units]
    transient, permanent = ids[0], ids[1]
    real = pipeline.process_unit
    calls: dict[str, int] = {}

    def flaky(unit, cfg, work):
        calls[unit.unit_id] = calls.get(unit.unit_id, 0) + 1
        if unit.unit_id == transient and calls[transient] == 1:
            raise OSError("transient: NFS hiccup")
        if unit.unit_id == permanent:
            raise RuntimeError("permanent: this series always crashes")
        return real(unit, cfg, work)

    monkeypatch.setattr(pipeline, "process_unit", flaky)
    work = folder / "work-flaky"
    with pytest.raises(IncompleteRunError, match="1 of [0-9]+ studies failed after retries") as incomplete:
        ingest_export(config_path=str(config), work_dir=str(work), parallel=False)
    summary = incomplete.value.result
    assert summary["studies"] >= 2
    assert summary["failed"] == 1  # the permanent one, after its retries
    assert calls[permanent] == 3  # 1 try + 2 retries, then quarantined
    assert calls[transient] == 2  # failed once, succeeded on its retry
    result = pipeline.build_from_work(pipeline_config(config), work, folder / "flaky-dataset")
    quarantine = pq.read_table(result.path / "tables" / "quarantine").to_pandas()
    failed = quarantine[quarantine["reason"] == "stage_failed"]
    study = failed[failed["stage"] == "pipeline"]
    assert len(study) == 1 and "permanent" in study["message"].iloc[0]
    # its report leaves the corpus with it: it left unnamed, now its row names it and its export
    left = failed[failed["stage"] == "reports"]
    assert len(left) >= 1 and left["message"].str.contains(f"links to study {permanent}, which failed").all()
    assert all(Path(path).is_file() for path in left["path"]) and (left["source_sha256"] != "").all()
    reports = pq.read_table(result.path / "tables" / "reports").to_pandas()
    assert set(left["item_id"]).isdisjoint(reports["report_id"]) and permanent not in set(reports["study_id"])


def test_a_run_warns_once_that_segmentation_falls_back_to_thresholds(setup, tmp_path, capfd, caplog):
    # the planning process warned, then each Dask worker again when it built its segmenter
    from flows.ingest import ingest_export

    _, config = setup
    data = yaml.safe_load(config.read_text())
    data["anatomy"] = {"backend": "auto", "weights_path": str(tmp_path / "no-weights")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING, logger="ctcorpus.anatomy"):
        ingest_export(config_path=str(path), work_dir=str(tmp_path / "work"), parallel=True)
    warning = "TotalSegmentator weights not provisioned"
    assert caplog.text.count(warning) == 1  # planning's
    captured = capfd.readouterr()  # the workers' stderr is ours: at most the console's copy of planning's
    assert (captured.out + captured.err).count(warning) <= 1


@pytest.mark.parametrize(("threads", "in_flight"), [(4, 2), (2, 4)])
def test_studies_in_flight_are_bounded_by_the_config(setup, tmp_path, monkeypatch, threads: int, in_flight: int):
    """At most min(prefect_task_threads, max_in_flight) studies are processed at once, and that many are.

    Each fake study waits at a barrier of that many parties (so the bound is reached, not undercut),
    then until every study has started or a moment passed (so a flow without the bound starts more).
    """
    from flows.ingest import ingest_export

    _, config = setup
    limit, n = min(threads, in_flight), 6
    data = yaml.safe_load(config.read_text())
    data["run"].update(prefect_task_threads=threads, max_in_flight=in_flight)
    path = tmp_path / "bounded.yaml"
    path.write_text(yaml.safe_dump(data))
    units = tuple(pipeline.StudyUnit(f"stu-{i}", f"pat-{i}", (), (), None, "") for i in range(n))
    lock, barrier, all_started = threading.Lock(), threading.Barrier(limit, timeout=60), threading.Event()
    counts = {"started": 0, "running": 0, "peak": 0}

    def counting(unit, cfg, work):
        with lock:
            counts["started"] += 1
            counts["running"] += 1
            counts["peak"] = max(counts["peak"], counts["running"])
            if counts["started"] == n:
                all_started.set()
        barrier.wait()
        all_started.wait(0.2)
        with lock:
            counts["running"] -= 1
        return pipeline.UnitOutcome(unit.unit_id, unit.patient_id, "", ())

    monkeypatch.setattr(pipeline, "plan_export", lambda cfg, work: pipeline.ExportPlan(units, "", "", (), 0, cfg.recorded()))
    monkeypatch.setattr(pipeline, "process_unit", counting)
    summary = ingest_export(config_path=str(path), work_dir=str(tmp_path / "work"), parallel=False)
    assert summary["studies"] == n and summary["failed"] == 0
    assert counts["peak"] == limit


def _lost_worker(unit, cfg, work):
    raise RuntimeError("CTCORPUS_PSEUDONYM_KEY is not set on this worker")


def test_an_ingest_run_that_lost_studies_or_found_none_ends_failed_once_recorded(setup, tmp_path, monkeypatch):
    """A deployment's run (prefect.yaml: ingest-nightly) whose every study failed, or whose export held no
    study, was Completed: only the CLI exited 1, and the Prefect server showed the night as a success."""
    from flows.ingest import ingest_export

    _, config = setup
    empty = tmp_path / "empty-export"
    empty.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "process_unit", _lost_worker)
        lost = ingest_export(config_path=str(config), work_dir=str(tmp_path / "lost"), parallel=False, return_state=True)
    none = ingest_export(config_path=str(config), export_dir=str(empty), report_files=[], work_dir=str(tmp_path / "none"),
                         parallel=False, return_state=True)
    for state, message in ((lost, r"(\d+) of \1 studies failed after retries"), (none, f"no study found under {empty} ")):
        assert state.is_failed()
        error = state.result(raise_on_failure=False)
        assert isinstance(error, IncompleteRunError) and re.match(message, error.message)
        assert Path(error.result["run_index"]).is_file()  # recorded first: the studies done are kept
    assert lost.result(raise_on_failure=False).result["failed"] > 0


def test_ingest_command_fails_when_studies_failed(setup, tmp_path, monkeypatch):
    folder, config = setup
    monkeypatch.setattr(pipeline, "process_unit", _lost_worker)
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["ingest", str(folder / "export"), "-c", str(config), "--work", str(work), "--serial"])
    units = json.loads((work / pipeline.RUN_INDEX).read_text())["units"]
    assert units and all("CTCORPUS_PSEUDONYM_KEY" in u["failed"] for u in units)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        f"{len(units)} of {len(units)} studies failed after retries: their errors are in {work / pipeline.RUN_INDEX}")


def test_ingest_command_refuses_a_scheduler_address_that_is_no_url_naming_the_option(tmp_path, monkeypatch):
    """`--dask-address scheduler:8786` was refused inside the flow, after Prefect's start, as an error of the
    default config ('<default>: invalid configuration: run.dask_address ...'), naming no option."""
    import flows.ingest

    started = []
    monkeypatch.setattr(flows.ingest, "ingest_export", lambda **parameters: started.append(parameters))
    (tmp_path / "export").mkdir()
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "export"), "--dask-address", "scheduler:8786"],
                                env={"CTCORPUS_PSEUDONYM_KEY": "test-key"})
    assert result.exit_code == 2 and not started
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # typer's box wraps the line
    assert "Invalid value for '--dask-address': must be a scheduler URL such as tcp://host:8786" in said


def test_ingest_command_refuses_a_report_export_that_does_not_exist(tmp_path, monkeypatch):
    """A mistyped -r path stops the command before any work: the flow would quarantine it and exit 0
    with a corpus whose studies have no reports."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    result = CliRunner().invoke(app, ["ingest", "export", "-r", "missing.csv", "--work", "work", "--serial"],
                                env={"CTCORPUS_PSEUDONYM_KEY": "test-key"})
    assert result.exit_code == 2
    assert "missing.csv" in result.output and "does not exist" in result.output
    assert not (tmp_path / "work").exists()


def test_an_output_folder_that_cannot_be_written_ends_a_command_with_one_line_naming_it(setup, tmp_path):
    """A --work or --out folder under a file (a read-only share, no permission) was a traceback from deep
    inside the run, three of them for a build (Prefect's log, its retry, the command's); the audit's is
    tested in test_flows_produce_tables_and_dask_matches_serial, which has a dataset to audit."""
    folder, config = setup
    blocker = tmp_path / "ctcorpus.yaml"
    blocker.write_text("")
    commands = {
        "work_dir (--work)": ["ingest", str(folder / "export"), "-c", str(config), "--work", str(blocker / "work"), "--serial"],
        "out_dir (--out)": ["build", "-c", str(config), "--out", str(blocker / "dataset" / "v1")],
    }
    for origin, command in commands.items():
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        last = result.output.splitlines()[-1]
        assert str(blocker) in last and f"{origin}: cannot create this folder: " in last, last


def test_ingest_command_refuses_a_missing_export_folder_before_prefect_starts(tmp_path, monkeypatch):
    """A mistyped or unset export path was found by the flow's first task: after Prefect's API server
    started (a minute on a busy machine) and under two ERROR lines of Prefect's; it is one line now."""
    import flows.runtime

    def no_prefect() -> None:
        raise AssertionError("Prefect was started")

    monkeypatch.setattr(flows.runtime, "start_prefect_server", no_prefect)
    monkeypatch.chdir(tmp_path)
    env = {"CTCORPUS_PSEUDONYM_KEY": "test-key"}
    cases = {("ingest", "exprot", "--serial"): "exprot: export root is not a folder (run.export_dir, or `ctcorpus ingest EXPORT`)",
             ("ingest", "--serial"): "run.export_dir: no export folder: set run.export_dir"}
    for command, message in cases.items():
        result = CliRunner().invoke(app, list(command), env=env)
        assert result.exit_code == 2, result.output
        assert result.output.splitlines()[-1].startswith(message), result.output


#: A progress line on stderr: the time, then the log message (other lines are the log handlers' of the test run).
_TIMED = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (.*)$"
_SHOWN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (studies done=.*)$"


def test_ingest_progress_is_logged_and_shown_as_lines_where_stderr_is_no_terminal(capsys):
    """The rich bar is not drawn where stderr is a file or a pipe: a scheduled `ctcorpus ingest` (cron, a
    container's log) showed no progress until its summary, hours later."""
    from flows.common import progress

    logger = logging.getLogger("test.ingest.progress")
    logged = logging.handlers.BufferingHandler(100)
    logger.addHandler(logged)
    logger.setLevel(logging.INFO)
    expected = [f"studies done={n}/25" for n in (3, 6, 9, 12, 15, 18, 21, 24, 25)]
    assert list(progress(iter(range(25)), 25, True, logger)) == list(range(25))
    assert re.findall(_SHOWN, capsys.readouterr().err, re.MULTILINE) == expected
    assert [record.getMessage() for record in logged.buffer] == expected
    assert list(progress(iter(range(2)), 2, False, logger)) == [0, 1]  # a deployment's run: the log alone
    assert re.findall(_SHOWN, capsys.readouterr().err, re.MULTILINE) == []
    assert logged.buffer[-1].getMessage() == "studies done=2/2"
    logger.removeHandler(logged)


def test_a_build_shows_the_studies_it_read_then_that_it_writes(capsys):
    """`ctcorpus build` showed nothing for many minutes over 100,000 studies, where ingest shows its progress."""
    from flows.build import reading

    logger = logging.getLogger("test.build.progress")
    logged = logging.handlers.BufferingHandler(100)
    logger.addHandler(logged)
    logger.setLevel(logging.INFO)
    studies = reading(list(range(20)), True, logger)
    assert [next(studies) for _ in range(4)] == [0, 1, 2, 3]
    assert re.findall(_TIMED, capsys.readouterr().err, re.MULTILINE) == ["studies read=2/20"]  # at each tenth
    assert list(studies) == list(range(4, 20))
    expected = [f"studies read={n}/20" for n in range(4, 21, 2)] + ["writing tables and shards"]
    assert re.findall(_TIMED, capsys.readouterr().err, re.MULTILINE) == expected
    assert [record.getMessage() for record in logged.buffer] == ["studies read=2/20", *expected]
    logger.removeHandler(logged)


def test_the_ingest_summary_says_when_a_run_did_no_work(tmp_path, monkeypatch):
    """A re-run over an unchanged export showed `processed {}`, and a run's stage counts as a dict's repr."""
    import flows.ingest
    import flows.runtime

    def rerun(**parameters):
        return {"studies": 8, "volumes": 8, "computed": {}, "cached": {"text": 8, "anatomy": 8}, "quarantined": 0,
                "failed": 0, "seconds": 4.0}

    monkeypatch.setattr(flows.runtime, "start_prefect_server", lambda: None)
    monkeypatch.setattr(flows.ingest, "ingest_export", rerun)
    (tmp_path / "export").mkdir()
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "export"), "--serial"], env={"CTCORPUS_PSEUDONYM_KEY": "test-key"})
    assert result.exit_code == 0, result.output
    assert re.search(r"processed +. nothing: every result was in the work store", result.output), result.output
    assert re.search(r"skipped \(cached\) +. anatomy 8, text 8 ", result.output), result.output



def test_the_build_summary_shows_each_split_as_counts(tmp_path, monkeypatch):
    """A split's counts read as a dict's repr ({'patients': 7, ...}) in the build summary."""
    import flows.build
    import flows.runtime

    def built(**parameters):
        assert parameters["show_progress"]  # the command shows the build's progress, as ingest's
        return {"path": str(tmp_path / "v1"), "files": 24, "changes": "kept=20 new=4 dropped=2", "splits": {
            "train": {"patients": 7, "studies": 16}, "test": {"patients": 0, "studies": 0}}}

    monkeypatch.setattr(flows.runtime, "start_prefect_server", lambda: None)
    monkeypatch.setattr(flows.build, "build_dataset", built)
    result = CliRunner().invoke(app, ["build", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "v1")])
    assert result.exit_code == 0, result.output
    assert re.search(r"split train +. patients 7, studies 16 ", result.output), result.output
    assert re.search(r"split test +. patients 0, studies 0 ", result.output) and "{" not in result.output
    assert re.search(r"changes +. kept=20 new=4 dropped=2 ", result.output), result.output

def test_train_command_refuses_an_unknown_device(tmp_path):
    """A mistyped --device is a usage error naming the option, before a flow starts (torch raised it from
    inside the train flow, as a traceback)."""
    result = CliRunner().invoke(app, ["train", str(tmp_path / "dataset"), "--out", str(tmp_path / "run"), "--device", "gpu"])
    assert result.exit_code == 2 and "--device" in result.output
    assert not (tmp_path / "run").exists()


def test_train_command_shows_the_training_progress(tmp_path, monkeypatch):
    """The step losses a training run logs are its progress; ``ctcorpus train`` showed none of them
    (no handler: Python prints only warnings), only a table hours later."""
    import flows.train

    def logging_flow(**parameters):
        logging.getLogger("ctcorpus.train.loop").info("step=%d loss=%.4f", 7, 0.5)
        return {"out_dir": parameters["out_dir"]}

    monkeypatch.setattr(flows.train, "train", logging_flow)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "dataset"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "INFO ctcorpus.train.loop step=7 loss=0.5000" in result.stderr
    assert not logging.getLogger("ctcorpus.train").handlers  # the command leaves logging as it found it


def test_ingest_command_takes_the_export_of_the_config_as_the_flow_does(tmp_path, monkeypatch):
    """``ctcorpus ingest -c ctcorpus.yaml`` with run.export_dir set: the command demanded the export as an
    argument, where the flow (ingest_export without export_dir) takes the config's."""
    import flows.ingest  # noqa: F401  Prefect sets up its log handlers at import, outside CliRunner's streams

    monkeypatch.chdir(tmp_path)  # the default config's output_dir is relative
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(tmp_path)))
    (tmp_path / "export").mkdir()
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "-c", str(config), "--serial"])
    assert result.exit_code == 1 and f"no study found under {tmp_path / 'export'} " in result.output
    no_export = runner.invoke(app, ["ingest", "--work", str(tmp_path / "work"), "--serial"],
                              env={"CTCORPUS_PSEUDONYM_KEY": "test-key"})
    assert no_export.exit_code == 2 and no_export.output.splitlines()[-1].startswith("run.export_dir: no export folder")


def test_ingest_command_fails_when_the_export_holds_no_study(tmp_path):
    """An export folder with no study in it (a wrong path, an unmounted share) is not a successful run."""
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "notes.txt").write_text("not DICOM")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(tmp_path)))
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "export"), "-c", str(config), "--serial"])
    assert result.exit_code == 1
    # the plan is shown once made: on a large export the studies' progress starts after a long indexing
    assert re.findall(_TIMED, result.stderr, re.MULTILINE)[0] == "planned export studies=0 quarantined_files=1"
    assert result.output.splitlines()[-1].startswith(f"no study found under {tmp_path / 'export'} (1 quarantined")
    # the corpus's quarantine names files redacted: the command says where the real paths are
    (private,) = re.findall(r"real paths \(operators only\): (\S+)", result.output)
    assert [json.loads(line)["path"] for line in Path(private).read_text().splitlines()] == ["notes.txt"]


def pipeline_config(path: Path):
    from ctcorpus.config import load_config

    return load_config(path)


def test_cli_commands_and_flows_import(tmp_path):
    import flows.audit
    import flows.build
    import flows.ingest
    import flows.train

    assert all(hasattr(module, name) for module, name in (
        (flows.audit, "audit_dataset"), (flows.build, "build_dataset"), (flows.ingest, "ingest_export"), (flows.train, "train")))
    runner = CliRunner()
    for command in ("synth", "ingest", "build", "audit", "verify", "train", "demo", "config"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    printed = tmp_path / "default.yaml"
    printed.write_text(runner.invoke(app, ["config"]).output)
    from ctcorpus.config import CorpusConfig, load_config

    assert load_config(printed) == CorpusConfig()  # `ctcorpus config > file` is a loadable config
    no_key = runner.invoke(app, ["ingest", str(tmp_path)], env={"CTCORPUS_PSEUDONYM_KEY": ""})
    assert no_key.exit_code == 2 and "CTCORPUS_PSEUDONYM_KEY" in no_key.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("outputs:\n  split_fractions: {train: 0.5, test: 0.1}\n")
    result = runner.invoke(app, ["ingest", str(tmp_path), "-c", str(bad)])
    assert result.exit_code == 2 and "outputs.split_fractions" in result.output
    # neither is a failed stage: no reason code after the message says one
    assert "[stage_failed]" not in no_key.output + result.output


@pytest.fixture
def console_and_run_logs():
    """What reaches the console (the root logger's handlers: Prefect's console handler) and what the run
    loggers send on (their own handlers: the Prefect API's). The flows are imported first: Prefect sets up
    its logging at import, which drops handlers added before it (the test alone saw no run log)."""
    import flows.audit
    import flows.build  # noqa: F401

    console, run_logs = (logging.handlers.BufferingHandler(capacity=10**4) for _ in range(2))
    logging.getLogger().addHandler(console)
    logging.getLogger("prefect").addHandler(run_logs)
    yield console.buffer, run_logs.buffer
    logging.getLogger().removeHandler(console)
    logging.getLogger("prefect").removeHandler(run_logs)


def _errors_of_runs(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno >= logging.ERROR and r.name.startswith(("prefect.flow_runs", "prefect.task_runs"))]


def test_flow_commands_end_a_ctcorpus_error_with_its_message(tmp_path, console_and_run_logs):
    """Prefect's 2-3 ERROR lines of the failed run ('Finished in state Failed', 'Encountered exception') stood
    on the console before the one line that names the file and the reason."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(tmp_path)))
    runner = CliRunner()
    build = runner.invoke(app, ["build", "-c", str(config), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "v1")])
    audit = runner.invoke(app, ["audit", "-c", str(config), str(tmp_path / "missing")])
    assert build.exit_code == 2 and build.output.startswith(f"{tmp_path / 'work'}: no ingest run recorded here")
    assert audit.exit_code == 2 and audit.output.startswith(f"{tmp_path / 'missing'}: corpus folder not found")
    assert len(build.output.splitlines()) == len(audit.output.splitlines()) == 1
    console, run_logs = console_and_run_logs
    assert _errors_of_runs(run_logs) and not _errors_of_runs(console)  # a server keeps them; the console has the line
    assert not logging.getLogger().handlers[-1].filters  # the command leaves logging as it found it


def test_a_flow_command_shows_the_traceback_of_a_bug(tmp_path, monkeypatch, console_and_run_logs):
    """An error that is no ctcorpus error is a bug: its traceback stays on the console."""
    import flows.build

    def bug(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(flows.build.pipeline, "build_from_work", bug)
    monkeypatch.chdir(tmp_path)  # the default config's output_dir is relative
    result = CliRunner().invoke(app, ["build", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "v1")])
    assert isinstance(result.exception, ZeroDivisionError)
    console, _ = console_and_run_logs
    assert [r for r in _errors_of_runs(console) if r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError)]
    assert [r for r in _errors_of_runs(console) if r.getMessage().startswith("Finished in state Failed")]


def test_train_flow_streams_the_built_corpus(setup, tmp_path):
    """The corpus the pipeline built is trainable as it is: the train flow runs on its shards."""
    from flows.build import build_dataset
    from flows.ingest import ingest_export
    from flows.train import train

    folder, config = setup
    data = yaml.safe_load(config.read_text())
    data["outputs"] = {"split_fractions": {"train": 1.0}}
    data["train"] = {
        "input_shape_zyx": (32, 64, 64), "base_channels": 4, "embed_dim": 16, "text_heads": 2, "text_layers": 1,
        "max_tokens": 32, "vocab_size": 200, "batch_size": 2, "steps": 4, "warmup_steps": 1, "num_workers": 0,
        "eval_batch_size": 4, "shuffle_buffer": 4, "timing_warmup_steps": 1, "eval_split": "train",
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    ingest_export(config_path=str(path), work_dir=str(tmp_path / "work"), parallel=False)
    build_dataset(config_path=str(path), work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "dataset"))
    result = train(dataset_dir=str(tmp_path / "dataset"), out_dir=str(tmp_path / "run"), config_path=str(path), device="cpu")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["metrics"] and metrics
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "tokenizer.json").is_file()



#: The interrupted study's: module-level, as Dask pickles what it runs (a function by reference).
_release, _ended = threading.Event(), []


def _interrupted(unit, cfg, work):
    os.kill(os.getpid(), signal.SIGINT)  # the operator's Ctrl-C, while this study runs
    _release.wait(60)
    _ended.append("study")
    return pipeline.UnitOutcome(unit.unit_id, unit.patient_id, "", ())


def test_an_interrupted_ingest_run_ends_at_once_not_when_its_studies_do(setup, tmp_path, monkeypatch):
    """Ctrl-C while a study ran on Dask: the flow waited for its task threads, which waited for the study
    (or, its workers killed by the same Ctrl-C, for run.dask_no_worker_timeout_s): the command hung."""
    from distributed import LocalCluster

    from flows.ingest import ingest_export

    _, config = setup
    unit = pipeline.StudyUnit("stu-0", "pat-0", (), (), None, "")
    monkeypatch.setattr(pipeline, "plan_export", lambda cfg, work: pipeline.ExportPlan((unit,), "", "", (), 0, cfg.recorded()))
    monkeypatch.setattr(pipeline, "process_unit", _interrupted)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(KeyboardInterrupt):
            ingest_export(config_path=str(config), work_dir=str(tmp_path / "work"), dask_address=cluster.scheduler_address)
        _ended.append("flow")
        _release.set()
    assert _ended[0] == "flow"



_TERMINATED_FLOW = '''
import atexit, os, signal

import psutil

from ctcorpus.cli import _prepare, _run_flow

_prepare(None)
from prefect import flow


@flow
def terminated() -> dict:
    print("children in run:", " ".join(str(c.pid) for c in psutil.Process().children()), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()
    return {}


atexit.register(lambda: print("children at exit:", [" ".join(c.cmdline()) for c in psutil.Process().children()]))
_run_flow(terminated)
'''


def test_a_terminated_flow_command_exits_and_stops_the_prefect_server_it_started(tmp_path):
    """`kill`/`timeout` on a command mid-run: Prefect sent the SIGTERM on to the default handler, which killed
    the process before its exit handlers ran, so the ephemeral Prefect API server was left running, orphaned."""
    import psutil

    script, output = tmp_path / "terminated.py", tmp_path / "output.txt"
    script.write_text(_TERMINATED_FLOW, encoding="utf-8")
    with output.open("w") as out:  # a file, not a pipe: an orphaned server would hold a pipe open
        code = subprocess.run([sys.executable, str(script)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, check=False,
                              timeout=600, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}).returncode
    text = output.read_text()
    started = [int(pid) for pid in re.search(r"children in run: *(.*)", text).group(1).split()]
    orphans = [p for p in map(psutil.Process, filter(psutil.pid_exists, started)) if p.ppid() == 1]
    for orphan in orphans:
        orphan.kill()
    assert code == 128 + signal.SIGTERM, text[-2000:]
    assert "children at exit: []" in text and not orphans


_INTERRUPTED_FLOW = '''
import atexit, os, signal, time

import psutil

from ctcorpus.cli import _prepare, _run_flow

signal.signal(signal.SIGINT, signal.default_int_handler)
_prepare(None)
from prefect import flow, task


def server_at_exit() -> None:  # runs before Prefect's exit handler stops its server (atexit: last in, first out)
    children = psutil.Process().children()
    print("server alive at exit:", bool(children) and psutil.STATUS_ZOMBIE not in [c.status() for c in children], flush=True)


@task
def interrupted() -> None:
    atexit.register(server_at_exit)
    print("children in run:", " ".join(str(c.pid) for c in psutil.Process().children()), flush=True)
    os.killpg(0, signal.SIGINT)  # a terminal's Ctrl-C: to the whole process group
    time.sleep(60)


@flow
def interrupting() -> dict:
    interrupted()
    return {}


atexit.register(lambda: print("children at exit:", [" ".join(c.cmdline()) for c in psutil.Process().children()]))
_run_flow(interrupting)
'''


def test_a_ctrl_c_on_a_flow_command_leaves_the_prefect_server_to_record_the_run_then_stops_it(tmp_path):
    """Ctrl-C reached the ephemeral Prefect API server too (one process group): it died, and Prefect sent each of
    the run's events to it 11 times before giving up, 2-3 minutes for an interrupted ingest before the command exited."""
    import psutil

    script, output = tmp_path / "interrupted.py", tmp_path / "output.txt"
    script.write_text(_INTERRUPTED_FLOW, encoding="utf-8")
    with output.open("w") as out:  # its own session: the Ctrl-C it sends to its group must not reach pytest
        code = subprocess.run([sys.executable, str(script)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, check=False,
                              timeout=60, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}).returncode
    text = output.read_text()
    started = [int(pid) for pid in re.search(r"children in run: *(.*)", text).group(1).split()]
    left = list(map(psutil.Process, filter(psutil.pid_exists, started)))
    for process in left:
        process.kill()
    assert code == -signal.SIGINT, text[-2000:]
    assert "server alive at exit: True" in text and "Unable to connect" not in text, text[-2000:]
    assert "children at exit: []" in text and not left


@pytest.mark.parametrize("error", ["closed", "cancelled"])
def test_a_study_stopped_by_a_ctrl_c_is_not_retried(setup, tmp_path, monkeypatch, error):
    """After a Ctrl-C each study in flight failed on the closed Dask client (its future cancelled, or no submit
    taken), and Prefect retried it twice, failing so again, while the command was to stop."""
    from distributed.client import ClosedClientError, FutureCancelledError

    from flows.ingest import ingest_export

    _, config = setup
    unit = pipeline.StudyUnit("stu-0", "pat-0", (), (), None, "")
    raised = {"closed": ClosedClientError("Client is closed."), "cancelled": FutureCancelledError("process_unit-0", "client closed")}
    calls = []

    def stopped(unit, cfg, work):
        calls.append(unit.unit_id)
        raise raised[error]

    monkeypatch.setattr(pipeline, "plan_export", lambda cfg, work: pipeline.ExportPlan((unit,), "", "", (), 0, cfg.recorded()))
    monkeypatch.setattr(pipeline, "process_unit", stopped)
    with pytest.raises(IncompleteRunError, match="1 of 1 studies failed after retries"):
        ingest_export(config_path=str(config), work_dir=str(tmp_path / "work"), parallel=False)
    assert calls == ["stu-0"]


def test_a_study_that_kept_killing_its_dask_worker_is_quarantined_without_more_tries(setup, tmp_path, monkeypatch):
    """Dask already ran a study whose worker died (out of memory on a large series) on
    distributed.scheduler.allowed-failures + 1 workers before it raised KilledWorker; each Prefect retry ran it
    that often again: 12 worker deaths for one study."""
    from types import SimpleNamespace

    from distributed import KilledWorker

    from flows.ingest import ingest_export

    _, config = setup
    unit = pipeline.StudyUnit("stu-0", "pat-0", (), (), None, "")
    calls = []

    def killing(unit, cfg, work):
        calls.append(unit.unit_id)
        raise KilledWorker("process_unit-0", SimpleNamespace(address="tcp://127.0.0.1:1"), allowed_failures=3)

    monkeypatch.setattr(pipeline, "plan_export", lambda cfg, work: pipeline.ExportPlan((unit,), "", "", (), 0, cfg.recorded()))
    monkeypatch.setattr(pipeline, "process_unit", killing)
    with pytest.raises(IncompleteRunError, match="1 of 1 studies failed after retries"):
        ingest_export(config_path=str(config), work_dir=str(tmp_path / "work"), parallel=False)
    assert calls == ["stu-0"]
