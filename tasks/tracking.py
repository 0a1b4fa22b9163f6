"""The MLflow run around a flow: opened (or resumed after a crash) first, finished last."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger, task

from lmloop import tracking
from lmloop.config import PipelineConfig
from lmloop.contracts import Run
from lmloop.corpus import DataValidationError
from lmloop.runs import RunIndex
from lmloop.settings import Home


@task(retries=2, retry_delay_seconds=2)
def start_tracking(config: PipelineConfig, run_name: str | None, sources: list[str], key: str, home: Home) -> Run:
    """Open the MLflow run every stage logs into, or resume the one ``key``'s crashed or failed attempt left."""
    index = RunIndex(home.work / "index")
    previous = index.resumable(key)
    if previous and not tracking.run_exists(previous):
        get_run_logger().warning(
            "the run index points at MLflow run %s, which %s no longer has: starting a new run",
            previous,
            tracking.tracking_uri(),
        )
        previous = None
    if previous:
        tracking.reopen_run(previous)
        index.record(key, previous, "running")
        return Run(run_id=previous, home=home)
    run_id = tracking.start_run(config.registry.experiment, run_name, {"lmloop.config_hash": config.digest()})
    tracking.log_params(run_id, {**config.flat(), "data.sources": sources})
    tracking.log_dict(run_id, config.model_dump(mode="json"), "config.json")
    index.record(key, run_id, "running")
    return Run(run_id=run_id, home=home)


@task
def finish_tracking(run: Run, key: str, status: str) -> None:
    """``status``: complete (FINISHED), rejected (data gate; a re-run starts afresh) or failed (resumable)."""
    tracking.finish_run(run.run_id, "FINISHED" if status == "complete" else "FAILED")
    RunIndex(run.home.work / "index").record(key, run.run_id, status)


@contextmanager
def tracked_run(
    config: PipelineConfig, run_name: str | None, sources: list[str], home: Home, key: str
) -> Iterator[Run]:
    """The MLflow run around a flow's stages: finished as complete, rejected (data gate) or failed (resumable)."""
    run = start_tracking(config, run_name, sources, key, home)
    try:
        yield run
    except DataValidationError:
        finish_tracking(run, key, "rejected")
        raise
    except Exception:
        finish_tracking(run, key, "failed")
        raise
    finish_tracking(run, key, "complete")
