"""Flow ``ingest_export``: discover what is new in an export and process it incrementally.

Thin: loads config, plans the export, runs one Prefect task per study (retried on transient
errors) whose work runs on Dask, and records the run. Study tasks run in
``run.prefect_task_threads`` threads, and at most ``run.max_in_flight`` are submitted at a
time, so the studies held in memory stay bounded on exports of any size. All real work is in
:mod:`ctcorpus.pipeline`.

Tasks use ``NO_CACHE``: results are keyed by input hash in ctcorpus's own work store, which
survives across runs and machines; Prefect's cache would only duplicate it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from ctcorpus import pipeline
from ctcorpus.config import CorpusConfig
from ctcorpus.errors import IncompleteRunError
from ctcorpus.outputs import WorkStore
from flows.common import ClusterLostError, announce, load_flow_config, progress, retry_unless_ctcorpus_error, study_executor
from flows.runtime import submit_bounded, task_runner, writable_folder


@task(name="plan-export", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_unless_ctcorpus_error)
def plan_task(config: CorpusConfig, work_dir: Path) -> pipeline.ExportPlan:
    return pipeline.plan_export(config, work_dir)


def _retry_unless_cluster_lost(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a study's failure, unless the cluster has no worker left: no retry could run; or unless
    Dask raised ``KilledWorker``: it ran the study on ``distributed.scheduler.allowed-failures`` + 1
    workers, each died (a series too large for the worker's memory), and each retry killed as many;
    or unless the run was stopped (Ctrl-C): its Dask client, closed, cancelled the study
    (``FutureCancelledError``) or refused its retry (``ClosedClientError``), so each retry failed again.
    (A worker without the pseudonym key fails with a ctcorpus error, which a retry may send to another.)"""
    from distributed import KilledWorker
    from distributed.client import ClosedClientError, FutureCancelledError

    futile = (ClusterLostError, KilledWorker, ClosedClientError, FutureCancelledError)
    return not isinstance(state.result(raise_on_failure=False), futile)


@task(name="process-study", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, task_run_name="study-{unit.unit_id}",
      retry_condition_fn=_retry_unless_cluster_lost)
def process_task(unit: pipeline.StudyUnit, config: CorpusConfig, work_dir: Path, executor: Any) -> pipeline.UnitOutcome:
    return executor(pipeline.process_unit, unit, config, work_dir)


@task(name="record-run", cache_policy=NO_CACHE)
def record_task(
    plan: pipeline.ExportPlan, outcomes: list[pipeline.UnitOutcome], work_dir: Path, started: float
) -> pipeline.RunSummary:
    return pipeline.record_run(plan, outcomes, work_dir, started)


def _outcome(
    unit: pipeline.StudyUnit, future: PrefectFuture[pipeline.UnitOutcome], config: CorpusConfig, work_dir: Path
) -> pipeline.UnitOutcome:
    """The study's outcome, or pipeline.failed_outcome's: a study that keeps failing is quarantined, the run goes on.
    A lost cluster stops the run instead: it is no fault of the study."""
    future.wait()
    if future.state.is_completed():
        return future.result()
    if isinstance(error := future.state.result(raise_on_failure=False), ClusterLostError):
        raise error
    get_run_logger().error("study failed after retries unit=%s error=%s", unit.unit_id, future.state.message)
    return pipeline.failed_outcome(unit, str(future.state.message), config, work_dir)


@flow(name="ingest_export", log_prints=False)
def ingest_export(
    config_path: str | None = None,
    export_dir: str | None = None,
    work_dir: str | None = None,
    report_files: list[str] | None = None,
    dask_address: str | None = None,
    parallel: bool = True,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Ingest an export into the work store: DICOM -> volumes, masks, reports, snippets.

    Re-running on an unchanged export does no work; new studies are processed alone. A study
    whose processing keeps failing after retries is quarantined and the other studies go on; the
    run is recorded, then fails with :class:`~ctcorpus.errors.IncompleteRunError` (its errors are
    in the run index, whose path the summary holds: ``run_index``), as it does when the export
    holds no study (a wrong path, an unmounted share): a scheduler must not count either as a
    success. One run at a time holds the work store: a second fails at once
    (:meth:`~ctcorpus.outputs.WorkStore.exclusive`).
    """
    started = time.monotonic()
    logger = get_run_logger()
    config, work = load_flow_config(
        config_path, export_dir=export_dir, work_dir=work_dir, report_files=report_files, dask_address=dask_address
    )
    writable_folder(work, "work_dir (--work)" if work_dir else "run.output_dir (the work store's parent)")
    with WorkStore(work).exclusive():  # a scheduled run that overlaps the last one fails instead of deleting its work
        # The runner is made here, not in @flow: the config is only known once the flow runs. It is
        # entered first so that it exits last: an interrupted run closes the Dask client first, which
        # ends the studies its task threads await; the runner's exit joins those threads. Both are
        # entered before the plan: a Dask scheduler that cannot be reached failed the run only once
        # the whole export was indexed (hours on a large one).
        with task_runner(config.run) as runner, study_executor(config.run, parallel) as (executor, window):
            plan = plan_task(config, work)
            # shown: indexing a large export takes long, and the studies' progress starts only after it
            announce(f"planned export studies={len(plan.units)} quarantined_files={len(plan.quarantine)}", show_progress, logger)
            logger.info("studies in flight=%d task threads=%d", window, config.run.prefect_task_threads)
            parameters = {"config": config, "work_dir": work, "executor": executor}
            done = submit_bounded(lambda unit: runner.submit(process_task, {"unit": unit, **parameters}), plan.units, window)
            outcomes = [_outcome(unit, future, config, work) for unit, future in progress(done, len(plan.units), show_progress, logger)]
        summary = record_task(plan, outcomes, work, started)
    logger.info("ingest done %s", summary.line())
    result = {**summary.as_dict(), "run_index": str(work / pipeline.RUN_INDEX),
              "quarantine_private": str(work / pipeline.PRIVATE_QUARANTINE)}
    if summary.failed:
        raise IncompleteRunError(
            f"{summary.failed} of {summary.studies} studies failed after retries: their errors are in "
            f"{result['run_index']}, a build lists them in tables/quarantine as stage_failed", result)
    if not summary.studies:
        raise IncompleteRunError(
            f"no study found under {config.run.export_dir} ({summary.quarantined} quarantined, a build lists them "
            "in tables/quarantine): is it the export's root folder?", result)
    return result
