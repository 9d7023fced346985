"""Flow ``ingest_export``: discover what is new in an export and process it incrementally.

Thin: loads config, plans the export, runs one Prefect task per study (retried on transient
errors) whose work runs on Dask, and records the run. All real work is in
:mod:`ctcorpus.pipeline`.

Tasks use ``NO_CACHE``: results are keyed by input hash in ctcorpus's own work store, which
survives across runs and machines; Prefect's cache would only duplicate it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.progress import track

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ctcorpus import pipeline
from ctcorpus.config import CorpusConfig
from flows.common import load_flow_config, study_executor


@task(name="plan-export", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def plan_task(config: CorpusConfig, work_dir: Path) -> pipeline.ExportPlan:
    return pipeline.plan_export(config, work_dir)


@task(name="process-study", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, task_run_name="study-{unit.unit_id}")
def process_task(unit: pipeline.StudyUnit, config: CorpusConfig, work_dir: Path, executor: Any) -> pipeline.UnitOutcome:
    return executor(pipeline.process_unit, unit, config, work_dir)


@task(name="record-run", cache_policy=NO_CACHE)
def record_task(
    plan: pipeline.ExportPlan, outcomes: list[pipeline.UnitOutcome], work_dir: Path, started: float
) -> pipeline.RunSummary:
    return pipeline.record_run(plan, outcomes, work_dir, started)


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
    whose processing keeps failing after retries is quarantined and the run completes.
    """
    started = time.monotonic()
    logger = get_run_logger()
    config, work = load_flow_config(
        config_path, export_dir=export_dir, work_dir=work_dir, report_files=report_files, dask_address=dask_address
    )
    plan = plan_task(config, work)
    logger.info("planned export studies=%d quarantined_files=%d", len(plan.units), len(plan.quarantine))
    with study_executor(config.run, parallel) as executor:
        futures = [process_task.submit(unit, config, work, executor) for unit in plan.units]
        outcomes = []
        pairs = zip(plan.units, futures)
        if show_progress:
            pairs = track(list(pairs), description="studies", transient=True)
        for unit, future in pairs:
            future.wait()
            if future.state.is_completed():
                outcomes.append(future.result())
            else:
                logger.error("study failed after retries unit=%s error=%s", unit.unit_id, future.state.message)
                outcomes.append(pipeline.failed_outcome(unit, str(future.state.message), config, work))
    summary = record_task(plan, outcomes, work, started)
    logger.info("ingest done %s", summary.line())
    return summary.as_dict()
