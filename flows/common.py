"""Shared plumbing of the flows: config loading with CLI overrides, where study work runs, progress."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.progress import track

from ctcorpus.config import CorpusConfig, config_from_dict, load_config
from ctcorpus.config.run import RunConfig
from ctcorpus.errors import CtCorpusError
from flows.runtime import dask_client, studies_in_flight

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")
Logger = logging.Logger | logging.LoggerAdapter[Any]

#: Seconds between checks that the cluster still has workers while a study's result is awaited.
_WORKER_CHECK_S = 5.0


class ClusterLostError(CtCorpusError):
    """The Dask cluster has had no worker for ``run.dask_no_worker_timeout_s``: no study can run
    (a ctcorpus error: the CLI ends with its message, no traceback)."""


def retry_unless_ctcorpus_error(task: Any, task_run: Any, state: Any) -> bool:
    """A task's ``retry_condition_fn``: retry its failure unless it is a ctcorpus error.

    Those are raised on purpose and name what to fix (a config field, missing weights, a work store
    without an ingest run): a retry met the same error, after a delay and another logged traceback.
    Other errors (a file share's hiccup) are retried.
    """
    return not isinstance(state.result(raise_on_failure=False), CtCorpusError)


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
        yield (lambda fn, *args: awaited(client, client.submit(fn, *args, pure=False), run)), window


def awaited(client: Client, future: Future, run: RunConfig) -> Any:
    """``future.result()``, or :class:`ClusterLostError` once the cluster has had no worker for
    ``run.dask_no_worker_timeout_s``.

    A scheduler whose workers all died or left (an existing cluster's nodes preempted, their
    processes killed) keeps a study's task waiting for one without end: a scheduled run hung
    forever instead of failing where an operator sees it.
    """
    alone_since: float | None = None
    check_s = min(_WORKER_CHECK_S, run.dask_no_worker_timeout_s / 2)
    while True:
        try:
            return future.result(timeout=check_s)
        except TimeoutError:
            if client.nthreads():  # asks the scheduler: its workers now
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since >= run.dask_no_worker_timeout_s:
                future.cancel()
                raise ClusterLostError(
                    f"the Dask cluster has had no worker for {run.dask_no_worker_timeout_s:g} s "
                    "(run.dask_no_worker_timeout_s): start workers and re-run; studies done so far are kept in "
                    "the work store and not redone",
                    path=run.dask_address or "local cluster",
                ) from None


def announce(message: str, show: bool, logger: Logger) -> None:
    """Log ``message`` (INFO); with ``show`` (the CLI) also print it on stderr after the time: the run
    logger's INFO lines are below Prefect's level, so a command showed none of them."""
    logger.info(message)
    if show:
        print(f"{datetime.now().isoformat(timespec='seconds')} {message}", file=sys.stderr, flush=True)


def progress(done: Iterable[T], total: int, show: bool, logger: Logger, what: str = "studies done") -> Iterator[T]:
    """Yield ``done`` (the studies finished, or read); log ``<what>=<n>/<total>`` (INFO) at each tenth of them.

    With ``show`` (the CLI) the progress is also on stderr: a bar on a terminal, else those lines, with
    the time (:func:`announce`): a bar is not drawn at all where stderr is a file or a pipe (cron, a
    container's log), so a scheduled run showed nothing for hours.
    """
    terminal = show and sys.stderr.isatty()
    if terminal:
        done = track(done, total=total, description=what, transient=True)
    step = max(1, math.ceil(total / 10))
    for count, item in enumerate(done, 1):
        yield item
        if count % step == 0 or count == total:
            announce(f"{what}={count}/{total}", show and not terminal, logger)
