"""Shared plumbing of the flows: config loading with CLI overrides, and where study work runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctcorpus.config import CorpusConfig, config_from_dict, load_config
from ctcorpus.config.run import RunConfig
from flows.runtime import dask_client, studies_in_flight


def load_flow_config(
    config_path: str | None,
    *,
    export_dir: str | None = None,
    work_dir: str | None = None,
    report_files: Sequence[str] | None = None,
    dask_address: str | None = None,
) -> tuple[CorpusConfig, Path]:
    """The run's config: the file (or the embedded default) with the flow's parameters on top.

    Its paths are made absolute here, against this process's folder: study work runs in Dask
    worker processes, and the workers of an existing cluster run in folders of their own, where
    a relative export path named no file (every stack rejected as unreadable), a relative work
    store was written beside the worker, never found by the flow, and relative TotalSegmentator
    weights were missing (every volume failed its segmentation).
    """
    data = load_config(config_path).model_dump(mode="json")
    run = data["run"]
    if export_dir is not None:
        run["export_dir"] = export_dir
    if report_files:
        run["report_files"] = list(report_files)
    if dask_address is not None:
        run["dask_address"] = dask_address
    if run["export_dir"] is not None:
        run["export_dir"] = str(Path(run["export_dir"]).absolute())
    run["report_files"] = [str(Path(f).absolute()) for f in run["report_files"]]
    run["output_dir"] = str(Path(run["output_dir"]).absolute())
    for key in ("weights_path", "home_dir"):  # TotalSegmentator runs in the workers too
        if data["anatomy"][key] is not None:
            data["anatomy"][key] = str(Path(data["anatomy"][key]).absolute())
    config = config_from_dict(data, source=config_path or "<default>")
    work = Path(work_dir).absolute() if work_dir else config.run.output_dir / "work"
    return config, work


Executor = Callable[..., Any]


@contextmanager
def study_executor(run: RunConfig, parallel: bool) -> Iterator[tuple[Executor, int]]:
    """Yield ``(execute, window)``: ``execute(fn, *args)`` runs on the run's Dask cluster, or inline
    when not parallel; ``window`` is how many studies to keep in flight (:func:`studies_in_flight`).

    Prefect tasks call ``execute`` from their threads; the heavy work runs in Dask worker
    processes, one study at a time per worker, so memory stays bounded.
    """
    if not parallel:
        yield (lambda fn, *args: fn(*args)), studies_in_flight(run, None)
        return
    with dask_client(run) as client:
        window = studies_in_flight(run, sum(client.nthreads().values()))
        yield (lambda fn, *args: client.submit(fn, *args, pure=False).result()), window
