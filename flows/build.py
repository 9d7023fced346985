"""Flow ``build_dataset``: splits, Parquet tables, WebDataset shards, manifest and card from the work store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ctcorpus import pipeline
from ctcorpus.config import CorpusConfig
from ctcorpus.outputs import BuildResult
from flows.common import Logger, announce, load_flow_config, progress, retry_unless_ctcorpus_error
from flows.runtime import writable_folder

T = TypeVar("T")


def reading(studies: Sequence[T], show: bool, logger: Logger) -> Iterator[T]:
    """Yield the studies a build reads with their :func:`~flows.common.progress` (``studies read=<n>/<total>``),
    then say that the tables and shards are written: reading 100,000 studies and writing their shards took
    many minutes with no line at all, where ingest shows its progress."""
    yield from progress(studies, len(studies), show, logger, "studies read")
    announce("writing tables and shards", show, logger)


@task(name="build-dataset", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2, retry_condition_fn=retry_unless_ctcorpus_error)
def build_task(config: CorpusConfig, work: Path, out: Path, show_progress: bool) -> BuildResult:
    track = partial(reading, show=show_progress, logger=get_run_logger())
    return pipeline.build_from_work(config, work, out, track)


@flow(name="build_dataset")
def build_dataset(
    config_path: str | None = None, work_dir: str | None = None, out_dir: str | None = None, show_progress: bool = False
) -> dict[str, Any]:
    """Build a dataset version from the last ingest run recorded in ``work_dir``; its progress is logged
    (INFO) and, with ``show_progress`` (the CLI), shown on stderr."""
    config, work = load_flow_config(config_path, work_dir=work_dir)
    out = Path(out_dir) if out_dir else Path(config.run.output_dir) / "dataset" / config.outputs.dataset_version
    # the version's lock and temporary folder are written beside it
    writable_folder(out.absolute().parent, "out_dir (--out)" if out_dir else "run.output_dir")
    result = build_task(config, work, out, show_progress)
    get_run_logger().info("built dataset path=%s splits=%s", result.path, result.manifest["splits"])
    return {"path": str(result.path), "splits": result.manifest["splits"], "files": len(result.manifest["files"]),
            "changes": str(result.changes) if result.changes else "a first version at this path"}
