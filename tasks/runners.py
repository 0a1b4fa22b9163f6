"""Where the data stage's per-file work runs: a Prefect task runner chosen by ``DataConfig``.

The flow stays one process; only the mapped per-unit tasks (ingest a file or a group of small files,
tokenize a shard) go to the runner: this process (thread), a local process pool, or Dask (a
``LocalCluster`` of worker processes, or an existing cluster by address). Every unit writes
content-addressed files (temporary name, atomic rename) and returns a small value, so the results
are the same whatever runs them, and a unit whose worker died is simply run again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, get_run_logger, task, unmapped
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from lmloop.core import settings
from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.core.stopping import StopRequest
from lmloop.data.file_reports import FileReport
from lmloop.data.planning import Unit, plan_ingest, process_unit
from lmloop.data.values import Ingested

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
    where = "while the data stage's workers ran: finished files are cached, a rerun goes on"
    while not future.wrapped_future.done():
        future.wait(_WAIT_S)
        stop.check(where)
    stop.check(where)  # a worker thread that saw the request ended its unit early: say why the stage stopped
    return future.result()


_POOLS: ContextVar[dict[tuple, TaskRunner] | None] = ContextVar("lmloop_data_workers", default=None)


@contextmanager
def data_workers() -> Iterator[None]:
    """Within this block the data stage's worker pools stay open from one stage to the next (ingest, then
    tokenize): workers start once (seconds each: Python, pandas, Great Expectations), not once per stage."""
    pools: dict[tuple, TaskRunner] = {}
    token = _POOLS.set(pools)
    try:
        yield
    finally:
        _POOLS.reset(token)
        for runner in pools.values():
            runner.__exit__(None, None, None)


@contextmanager
def _worker_env(kind: str) -> Iterator[None]:
    """The environment worker processes start with (they copy it when they start or take their first task).
    They report their task runs to this flow's Prefect API: without ``PREFECT_API_URL`` the flow talks to a
    temporary server the workers would not know of (each would start its own, seconds apiece, and record its
    task runs there). And each tokenizes on one thread: the processes are the parallelism (two workers of
    two Rust threads on two cores only contend)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if kind == "thread":
        yield
        return
    wanted = {"TOKENIZERS_PARALLELISM": "false"}
    if not PREFECT_API_URL.value():
        wanted["PREFECT_API_URL"] = str(get_client(sync_client=True).api_url).rstrip("/")
    with settings.environment(wanted):
        yield


@contextmanager
def _runner(kind: str, data: DataConfig) -> Iterator[TaskRunner]:
    """The open pool of this ``data_workers`` block, or one for this map only; a pool whose worker died is
    dropped (a broken process pool takes no more work)."""
    pools, key = _POOLS.get(), (kind, data.workers, data.cluster)
    if pools is None or kind == "thread":
        with task_runner(kind, data) as runner:
            yield runner
        return
    if key not in pools:
        pools[key] = task_runner(kind, data).__enter__()
    runner = pools[key]
    if hasattr(runner, "_cached_context"):  # Prefect caches the submitting task's context: take this task's
        runner._cached_context = None
    try:
        yield runner
    except BrokenProcessPool:
        pools.pop(key).__exit__(None, None, None)
        raise


def map_units(task: Task[..., T], items: list[Any], kind: str, data: DataConfig, /, **common: Any) -> list[T]:
    """Run ``task(item, **common)`` for every item on the chosen runner, results in item order. Units whose
    worker process died (``BrokenProcessPool``) are run once more in a fresh pool; Dask reschedules a dead
    worker's task itself, and Prefect retries a unit that raised."""
    results: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    for attempt in range(2):
        if not todo:
            break
        broken: list[int] = []
        try:
            with StopRequest() as stop, _worker_env(kind), _runner(kind, data) as runner:
                mapped = {"item": [items[i] for i in todo], **{k: unmapped(v) for k, v in common.items()}}
                for i, future in zip(todo, runner.map(task, mapped), strict=True):
                    try:
                        results[i] = _result(future, stop)
                    except BrokenProcessPool:
                        if attempt:
                            raise
                        broken.append(i)
                if broken:
                    raise BrokenProcessPool(f"{len(broken)} unit(s) lost with their worker")
        except BrokenProcessPool:
            if attempt:
                raise
        todo = broken
    return results


@task(retries=1, retry_delay_seconds=1)
def ingest_unit(
    item: Unit, data: DataConfig, validation: ValidationConfig, cache: Path, docs: Path
) -> list[FileReport]:
    """One worker's share: read, clean and check one large file or a group of small ones into shards."""
    from data_checks import data_docs

    with data_docs(docs):
        return process_unit(item, data, validation, cache=cache)


def ingest_on_runner(
    sources: list[str], *, data: DataConfig, validation: ValidationConfig, shards: Path, docs: Path, out: Path
) -> tuple[Ingested, str]:
    """The files not cached yet, unit by unit on the configured task runner (in order, whatever ran them);
    returns what was ingested and the runner's kind."""
    from data_checks import write_docs_index

    plan = plan_ingest(sources, data, validation, cache=shards)
    kind = runner_kind(data, plan.pending_bytes)
    if plan.units:
        get_run_logger().info(
            "ingest: %d unit(s), %.1f MB not cached, runner %s", len(plan.units), plan.pending_bytes / 1e6, kind
        )
    done = map_units(ingest_unit, plan.units, kind, data, data=data, validation=validation, cache=shards, docs=docs)
    for i, reports in enumerate(done):
        plan.fill(i, reports)
    write_docs_index(docs)
    return Ingested.write(out, plan.result()), kind
