"""The runtime adapter: Prefect environment, local and remote Dask clusters, bounded mapping."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from distributed import LocalCluster

from ctcorpus.config import RunConfig, config_from_dict
from ctcorpus.errors import ConfigError
from flows.runtime import (
    apply_prefect_settings,
    available_cpus,
    dask_client,
    map_bounded,
    prefect_environment,
    studies_in_flight,
    submit_bounded,
    writable_folder,
)


def slow_square(item: tuple[int, float]) -> tuple[int, int, int]:
    """Sleep, then square; returns (item, square, worker pid) so tests see where it ran."""
    value, delay = item
    time.sleep(delay)
    return value, value * value, os.getpid()


def fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError("three is not allowed")
    return value


class CountingIterator:
    """An input iterable that records, at each read, how far reads ran ahead of results."""

    def __init__(self, values: list[tuple[int, float]]) -> None:
        self.values = values
        self.taken = 0

    def __iter__(self) -> Iterator[tuple[int, float]]:
        for value in self.values:
            self.taken += 1
            yield value


# Later items finish first, so completion order differs from input order.
ITEMS = [(i, 0.3 if i % 3 == 0 else 0.02) for i in range(12)]


@pytest.fixture(scope="module")
def run_config() -> RunConfig:
    return RunConfig(n_workers=2, threads_per_worker=1, memory_limit_per_worker="1GiB")


@pytest.fixture(scope="module")
def client(run_config: RunConfig):
    with dask_client(run_config) as connected:
        yield connected


def test_local_cluster_is_sized_from_config(client) -> None:
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert sorted(client.nthreads().values()) == [1, 1]
    assert all(info["memory_limit"] == 1 << 30 for info in workers.values())


def test_work_runs_in_worker_processes(client) -> None:
    pids = {pid for _, _, pid in map_bounded(slow_square, ITEMS, client, 4)}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


@pytest.mark.parametrize("ordered", [True, False])
def test_map_bounded_window_and_order(client, ordered: bool) -> None:
    source = CountingIterator(ITEMS)
    results = []
    for result in map_bounded(slow_square, source, client, max_in_flight=3, ordered=ordered):
        # never more than 3 items read but not yet returned
        assert source.taken - len(results) <= 3
        results.append(result[:2])
    assert source.taken == len(ITEMS)
    expected = [(i, i * i) for i, _ in ITEMS]
    if ordered:
        assert results == expected
    else:
        assert sorted(results) == expected


def test_map_bounded_unordered_yields_in_completion_order(client) -> None:
    # item 0 sleeps 1.5 s, the others 0.01 s: with 2 workers and a window of 4, item 0 cannot
    # come first
    items = [(0, 1.5)] + [(i, 0.01) for i in range(1, 6)]
    values = [value for value, _, _ in map_bounded(slow_square, items, client, 4)]
    assert sorted(values) == list(range(6))
    assert values[0] != 0


def test_map_bounded_default_window_and_empty_input(client) -> None:
    assert list(map_bounded(slow_square, [], client)) == []
    assert [r[1] for r in map_bounded(slow_square, [(5, 0.0)], client)] == [25]


def test_map_bounded_propagates_the_first_error(client) -> None:
    with pytest.raises(ValueError, match="three is not allowed"):
        list(map_bounded(fail_on_three, range(8), client, 2, ordered=True))


def test_map_bounded_rejects_empty_window(client) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(map_bounded(fail_on_three, range(3), client, 0))


def test_connects_to_an_existing_scheduler_by_address() -> None:
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
    ) as cluster:
        run = RunConfig(dask_address=cluster.scheduler_address)
        with dask_client(run) as client:
            assert client.scheduler.address == cluster.scheduler_address
            results = list(map_bounded(slow_square, ITEMS[:4], client, 2, ordered=True))
            assert [r[:2] for r in results] == [(i, i * i) for i, _ in ITEMS[:4]]
            assert len({pid for _, _, pid in results} - {os.getpid()}) == 1
            assert len(client.scheduler_info()["workers"]) == 1


def test_unreachable_scheduler_is_a_config_error() -> None:
    # port 9 (discard) on localhost: nothing listens, the connection is refused quickly
    run = RunConfig(dask_address="tcp://127.0.0.1:9", dask_connect_timeout_s=1.0)
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler") as info:
        with dask_client(run):
            pass
    assert info.value.path == "tcp://127.0.0.1:9"


def test_config_rejects_bad_addresses() -> None:
    with pytest.raises(ConfigError, match="run.dask_address"):
        config_from_dict({"run": {"dask_address": "scheduler:8786"}})
    with pytest.raises(ConfigError, match="run.prefect_api_url"):
        config_from_dict({"run": {"prefect_api_url": "prefect-server:4200"}})
    with pytest.raises(ConfigError, match="run.n_workers"):
        config_from_dict({"run": {"n_workers": 0}})


def test_every_run_field_is_described() -> None:
    for name, field in RunConfig.model_fields.items():
        assert field.description, name


def test_prefect_environment_is_offline_and_inside_output(tmp_path: Path) -> None:
    env = prefect_environment(RunConfig(output_dir=tmp_path / "out"))
    assert env["PREFECT_HOME"] == str((tmp_path / "out" / ".prefect").resolve())
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS"] == "false"
    assert env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "120"
    assert "PREFECT_API_URL" not in env  # an API URL from the environment is left alone
    served = prefect_environment(
        RunConfig(prefect_home=tmp_path / "ph", prefect_api_url="http://prefect-server:4200/api")
    )
    assert served["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert served["PREFECT_HOME"] == str((tmp_path / "ph").resolve())


def test_apply_prefect_settings_writes_the_mapping_and_creates_home(tmp_path: Path) -> None:
    environ = {"PREFECT_API_URL": "http://kept:4200/api"}
    written = apply_prefect_settings(RunConfig(output_dir=tmp_path), environ)
    assert Path(written["PREFECT_HOME"]).is_dir()
    assert environ["PREFECT_API_URL"] == "http://kept:4200/api"
    assert {k: environ[k] for k in written} == written


def test_an_output_folder_that_cannot_be_written_is_a_config_error_naming_field_and_reason(tmp_path: Path, monkeypatch) -> None:
    """An output_dir under a file (or on a read-only share) was a NotADirectoryError traceback from Prefect's
    home folder, naming neither the setting nor what to fix."""
    blocker = tmp_path / "ctcorpus.yaml"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"run\.output_dir: cannot create this folder: Not a directory") as info:
        apply_prefect_settings(RunConfig(output_dir=blocker / "out"), {})
    assert info.value.path == str(blocker / "out" / ".prefect")
    with pytest.raises(ConfigError, match=r"run\.prefect_home: cannot create this folder: File exists"):
        apply_prefect_settings(RunConfig(prefect_home=blocker), {})
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # what a folder without write permission answers
    with pytest.raises(ConfigError, match=r"work_dir \(--work\): this folder is not writable"):
        writable_folder(tmp_path / "work", "work_dir (--work)")


def test_available_cpus_is_within_the_machine() -> None:
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_studies_in_flight_defaults() -> None:
    assert studies_in_flight(RunConfig(max_in_flight=3, prefect_task_threads=8), 16) == 3
    assert studies_in_flight(RunConfig(max_in_flight=3), None) == 3
    assert studies_in_flight(RunConfig(), 4) == 8  # twice the cluster's threads
    assert studies_in_flight(RunConfig(), 0) == 2  # a scheduler whose workers have not joined yet
    assert studies_in_flight(RunConfig(prefect_task_threads=5), None) == 5  # no cluster: one per thread


def test_submit_bounded_fills_the_window_and_never_exceeds_it() -> None:
    """Every item waits at a barrier of ``limit`` parties: the window is filled, and the peak shows it is not exceeded."""
    limit, lock, barrier = 3, threading.Lock(), threading.Barrier(3, timeout=60)
    running, peak = [0], [0]

    def work(item: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        barrier.wait()
        with lock:
            running[0] -= 1
        return item

    with ThreadPoolExecutor(8) as pool:
        done = list(submit_bounded(lambda item: pool.submit(work, item), range(9), limit))
        with pytest.raises(ValueError, match="at least 1"):
            list(submit_bounded(lambda item: pool.submit(work, item), range(3), 0))
    assert sorted(item for item, future in done if future.result() == item) == list(range(9))
    assert peak[0] == limit


def test_submit_bounded_frees_the_window_in_completion_order() -> None:
    """Item 0 finishes only after item 2 was yielded: a window waiting for its oldest item would stall."""
    release = threading.Event()
    seen = []

    def work(item: int) -> int:
        if item == 0:
            release.wait(60)
        return item

    with ThreadPoolExecutor(2) as pool:
        for item, _ in submit_bounded(lambda item: pool.submit(work, item), range(3), 2):
            seen.append(item)
            if item == 2:
                release.set()
    assert seen == [1, 2, 0]
