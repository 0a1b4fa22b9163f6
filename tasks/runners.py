"""Where the data stage's per-file work runs: a Prefect task runner chosen by ``DataConfig``.

The flow stays one process; only the mapped per-unit tasks (ingest a file or a group of small files,
tokenize a shard) go to the runner: this process (thread), a local process pool, or Dask (a
``LocalCluster`` of worker processes, or an existing cluster by address). Every unit writes
content-addressed files (temporary name, atomic rename) and returns a small value, so the results
are the same whatever runs them, and a unit whose worker died is simply run again.
"""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from prefect import Task, unmapped
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from lmloop.config import DataConfig
from lmloop.stopping import StopRequest

T = TypeVar("T")
_WAIT_S = 1.0  # how often a stop request is looked at while workers run


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runner_kind(data: DataConfig, pending_bytes: int) -> str:
    """``data.task_runner``, with ``auto`` resolved: Dask when a cluster is named, a process pool when there
    is enough new data to pay for starting workers (seconds each), else this process."""
    if data.task_runner != "auto":
        return data.task_runner
    if data.cluster:
        return "dask"
    workers = data.workers or cores()
    return "process" if workers > 1 and pending_bytes > data.parallel_min_mb * 1e6 else "thread"


def task_runner(kind: str, data: DataConfig) -> TaskRunner:
    workers = data.workers or cores()
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if data.cluster:
            return DaskTaskRunner(address=data.cluster)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    return ThreadPoolTaskRunner(max_workers=1)  # in this process, one unit at a time


def _result(future: Any, stop: StopRequest) -> Any:
    """The future's result; a stop request (Ctrl-C, SIGTERM) is honoured while waiting for it."""
    while not future.wrapped_future.done():
        future.wait(_WAIT_S)
        stop.check("while the data stage's workers ran: finished files are cached, a rerun goes on")
    return future.result()


def map_units(task: Task[..., T], items: list[Any], kind: str, data: DataConfig, /, **common: Any) -> list[T]:
    """Run ``task(item, **common)`` for every item on the chosen runner, results in item order. Units whose
    worker process died (``BrokenProcessPool``) are run once more in a fresh pool; Dask reschedules a dead
    worker's task itself, and Prefect retries a unit that raised."""
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    for attempt in range(2):
        with StopRequest() as stop, task_runner(kind, data) as runner:
            mapped = {"item": [items[i] for i in todo], **{k: unmapped(v) for k, v in common.items()}}
            futures = runner.map(task, mapped)
            broken = []
            for i, future in zip(todo, futures, strict=True):
                try:
                    results[i] = _result(future, stop)
                except BrokenProcessPool:
                    if attempt:
                        raise
                    broken.append(i)
        if not broken:
            return results
        todo = broken
    return results
