"""The runtime adapter of the flows: Prefect settings, the task runner and the Dask client.

Design (measured on a 2-core machine, see ``docker/README.md``): Prefect tasks run in threads
of the flow process (:func:`task_runner`), at most :func:`studies_in_flight` at a time
(:func:`submit_bounded`), and the heavy per-study work is submitted to Dask by the tasks
themselves (:func:`dask_client`; :func:`map_bounded` for plain functions). Prefect's
``DaskTaskRunner`` with process workers would make every worker start its own ephemeral Prefect
API (5-7 s each and a SQLite database per worker) unless a server runs; going through
``distributed.Client`` directly keeps one API per flow run, works the same against a local
cluster or a remote scheduler, and keeps the library functions free of Prefect.

Call :func:`apply_prefect_settings` before anything imports Prefect: Prefect reads its
settings into a global context at import time, and :func:`start_prefect_server` before a flow
runs.

>>> from ctcorpus.config import RunConfig
>>> sorted(prefect_environment(RunConfig(output_dir="out")))[:2]
['DO_NOT_TRACK', 'PREFECT_HOME']
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ctcorpus.config.run import RunConfig
from ctcorpus.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client
    from prefect.task_runners import ThreadPoolTaskRunner

__all__ = [
    "apply_prefect_settings",
    "available_cpus",
    "dask_client",
    "map_bounded",
    "prefect_environment",
    "start_prefect_server",
    "studies_in_flight",
    "submit_bounded",
    "task_runner",
    "writable_folder",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Completes(Protocol):
    """A future that calls back when it is done (Prefect's and ``concurrent.futures``' do)."""

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


F = TypeVar("F", bound=Completes)


def prefect_environment(run: RunConfig) -> dict[str, str]:
    """The environment variables that keep Prefect offline, quiet and inside the output folder.

    Pure: computes the values, sets nothing. ``PREFECT_API_URL`` is included only when the
    config names a server, so an API URL given by the environment (compose) is kept.

    Parameters
    ----------
    run:
        The run section of the corpus config.

    Returns
    -------
    dict[str, str]
        Variable name -> value.

    Examples
    --------
    >>> prefect_environment(RunConfig(output_dir="out"))["DO_NOT_TRACK"]
    '1'
    """
    home = run.prefect_home if run.prefect_home is not None else run.output_dir / ".prefect"
    env = {
        "PREFECT_HOME": str(Path(home).resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(run.prefect_startup_timeout_s),
        "PREFECT_LOGGING_LEVEL": run.prefect_logging_level,
    }
    if run.prefect_api_url is not None:
        env["PREFECT_API_URL"] = run.prefect_api_url
    return env


def apply_prefect_settings(
    run: RunConfig, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Write :func:`prefect_environment` into the environment and create ``PREFECT_HOME``.

    Must run before Prefect is first imported: Prefect builds its global settings at import
    time. If it was imported already, the variables still reach the subprocesses Prefect
    starts (its ephemeral API server), and a warning says the in-process settings are stale.

    Parameters
    ----------
    run:
        The run section of the corpus config.
    environ:
        The mapping to update; ``os.environ`` by default.

    Returns
    -------
    dict[str, str]
        The variables that were set.

    Examples
    --------
    >>> env: dict[str, str] = {}
    >>> _ = apply_prefect_settings(RunConfig(prefect_home="/tmp/ph"), env)
    >>> env["PREFECT_HOME"]
    '/tmp/ph'
    """
    env = prefect_environment(run)
    if "prefect" in sys.modules:
        logger.warning(
            "prefect was imported before apply_prefect_settings; in-process Prefect settings "
            "keep their import-time values home=%s",
            env["PREFECT_HOME"],
        )
    writable_folder(Path(env["PREFECT_HOME"]), "run.prefect_home" if run.prefect_home else "run.output_dir")
    (os.environ if environ is None else environ).update(env)
    return env


def writable_folder(path: Path, origin: str) -> Path:
    """Create the folder ``path`` (and its parents) and check that it takes files; return it.

    A run writes its outputs deep inside the stages: an output folder under a file, on a read-only
    share or without permission was a traceback (three, with a build's retry) naming neither the
    setting nor the reason. This raises a :class:`~ctcorpus.errors.ConfigError` naming the folder,
    where it comes from (``origin``: a config field or a command option) and the OS's reason,
    before any work.

    Examples
    --------
    >>> writable_folder(Path("out/work"), "run.output_dir")  # doctest: +SKIP
    PosixPath('out/work')
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != str(path) else ""
        raise ConfigError(f"{origin}: cannot create this folder: {exc.strerror}{where}", path=path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{origin}: this folder is not writable", path=path)
    return path


def start_prefect_server() -> None:
    """Start Prefect's ephemeral API server, deaf to SIGINT, unless ``PREFECT_API_URL`` names a server.

    A terminal's Ctrl-C reaches its whole process group, this server too (Prefect starts it as a
    child on first use): it died at once, and Prefect spent 2-3 minutes sending the run's last states
    and events to it (each event 11 connection tries, none configurable) before the command exited.
    Started here with SIGINT blocked, the server inherits the blocked signal (uvicorn's handler
    cannot unblock it) and lives until Prefect's exit handler stops it with SIGTERM. Prefect's later
    calls find this server: it is the one instance Prefect keeps per process. A Ctrl-C during the
    start waits for it (``run.prefect_startup_timeout_s`` at most), then takes effect.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def task_runner(run: RunConfig) -> ThreadPoolTaskRunner:
    """The Prefect task runner of ctcorpus flows: threads of the flow process.

    Prefect's default pool has no thread limit, so every submitted task would run at once.

    Parameters
    ----------
    run:
        The run section; ``prefect_task_threads`` sizes the pool.

    Returns
    -------
    prefect.task_runners.ThreadPoolTaskRunner
        Pass it to ``flow.with_options(task_runner=...)``, or, in a flow that reads its config
        at run time (``ingest_export``), enter it and ``submit`` tasks to it.

    Examples
    --------
    >>> task_runner(RunConfig(prefect_task_threads=2))  # doctest: +SKIP
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=run.prefect_task_threads)


def _dask_window(cluster_threads: int) -> int:
    """The default number of tasks in flight on Dask: twice the cluster's threads.

    One queued task per thread keeps every worker busy while a finished result travels back.
    """
    return 2 * max(1, cluster_threads)


def studies_in_flight(run: RunConfig, cluster_threads: int | None) -> int:
    """How many studies the ingest flow keeps submitted at once; each running one holds a study in memory.

    ``run.max_in_flight`` when set; else :func:`_dask_window` of the cluster, or, with no cluster
    (``cluster_threads`` None), ``run.prefect_task_threads``: more would only wait for a thread.

    Examples
    --------
    >>> studies_in_flight(RunConfig(max_in_flight=3), 8)
    3
    >>> studies_in_flight(RunConfig(), 4)
    8
    >>> studies_in_flight(RunConfig(prefect_task_threads=2), None)
    2
    """
    if run.max_in_flight is not None:
        return run.max_in_flight
    return run.prefect_task_threads if cluster_threads is None else _dask_window(cluster_threads)


def submit_bounded(submit: Callable[[T], F], items: Iterable[T], limit: int) -> Iterator[tuple[T, F]]:
    """Submit ``items`` with at most ``limit`` unfinished; yield ``(item, future)`` as each finishes.

    Bounds memory where a task runner would start everything submitted to it. The window frees
    when any future finishes (completion order, not input order), so one slow item does not idle
    the others; ``items`` is read only as the window allows.

    Parameters
    ----------
    submit:
        Starts one item, returning a future with ``add_done_callback``.
    items:
        The inputs.
    limit:
        The most futures unfinished at any time.

    Yields
    ------
    tuple
        ``(item, future)`` with ``future`` done.

    Raises
    ------
    ValueError
        ``limit`` is below 1.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(4) as pool:
    ...     sorted(f.result() for _, f in submit_bounded(lambda x: pool.submit(abs, x), [-2, -1], 1))
    [1, 2]
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    finished: queue.SimpleQueue[tuple[T, F]] = queue.SimpleQueue()
    unfinished = 0
    for item in items:
        if unfinished == limit:
            yield finished.get()
            unfinished -= 1
        submit(item).add_done_callback(lambda done, item=item: finished.put((item, done)))
        unfinished += 1
    for _ in range(unfinished):
        yield finished.get()


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count).

    In a container limited with ``cpuset`` ``os.cpu_count()`` overstates what is usable and
    would oversubscribe the cores.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def dask_client(run: RunConfig) -> Iterator[Client]:
    """A ``distributed.Client`` for the run: to ``run.dask_address``, or to a fresh LocalCluster.

    The local cluster has ``n_workers`` worker processes (default: :func:`available_cpus`),
    ``threads_per_worker`` threads each, ``memory_limit_per_worker`` each, and no dashboard
    (nothing to install; the scheduler's health endpoint takes port 8787 or, when that is busy,
    a free one). Cluster and client close on exit.

    Parameters
    ----------
    run:
        The run section of the corpus config.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ConfigError
        The scheduler at ``dask_address`` cannot be reached.

    Examples
    --------
    >>> with dask_client(RunConfig(n_workers=2)) as client:  # doctest: +SKIP
    ...     list(map_bounded(abs, [-1, -2], client, ordered=True))
    [1, 2]
    """
    from distributed import Client, LocalCluster

    if run.dask_address is not None:
        try:
            client = Client(run.dask_address, timeout=run.dask_connect_timeout_s)
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler ({exc}); start it or set run.dask_address "
                "to null to use a local cluster",
                path=run.dask_address,
            ) from None
        with client:
            yield client
        return
    n_workers = run.n_workers if run.n_workers is not None else available_cpus()
    logger.info(
        "starting local dask cluster n_workers=%d threads_per_worker=%d memory_limit=%s",
        n_workers,
        run.threads_per_worker,
        run.memory_limit_per_worker,
    )
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=run.threads_per_worker,
            processes=True,
            memory_limit=run.memory_limit_per_worker,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def map_bounded(
    fn: Callable[[T], R],
    items: Iterable[T],
    client: Client,
    max_in_flight: int | None = None,
    *,
    ordered: bool = False,
) -> Iterator[R]:
    """Run ``fn`` over ``items`` on Dask with at most ``max_in_flight`` items outstanding.

    ``items`` is consumed lazily, so an export with 100,000 series never becomes 100,000
    futures (and their inputs) on the scheduler at once. Results are yielded as they complete,
    or in input order with ``ordered=True``; in that case results waiting for an earlier one
    count against the window, so memory stays bounded either way. Items are submitted with
    ``pure=False``: two equal items are two tasks, and inputs are not hashed.

    Parameters
    ----------
    fn:
        A picklable function of one item (module-level, not a lambda, for process workers).
    items:
        The inputs; any iterable, read only as the window allows.
    client:
        A connected ``distributed.Client`` (see :func:`dask_client`).
    max_in_flight:
        Window size; None uses twice the cluster's total threads.
    ordered:
        Yield in input order instead of completion order.

    Yields
    ------
    R
        ``fn(item)`` for each item.

    Raises
    ------
    ValueError
        ``max_in_flight`` is below 1.
    Exception
        The first exception ``fn`` raised; outstanding work is cancelled. Functions that must
        not stop the run should take an error handler and return quarantine entries instead.

    Examples
    --------
    >>> list(map_bounded(abs, [-3, -1, -2], client, 2, ordered=True))  # doctest: +SKIP
    [3, 1, 2]
    """
    from distributed import as_completed

    limit = max_in_flight if max_in_flight is not None else _dask_window(sum(client.nthreads().values()))
    if limit < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {limit}")
    source = iter(items)
    pending: dict[object, int] = {}
    waiting: dict[int, R] = {}
    completed = as_completed()
    submitted = 0
    next_out = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) + len(waiting) < limit:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                future = client.submit(fn, item, pure=False)
                pending[future] = submitted
                completed.add(future)
                submitted += 1
            if not pending:
                return
            future = next(completed)
            index = pending.pop(future)
            result = future.result()
            if not ordered:
                yield result
                continue
            waiting[index] = result
            while next_out in waiting:
                yield waiting.pop(next_out)
                next_out += 1
    finally:
        for future in pending:
            future.cancel()
