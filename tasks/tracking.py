from __future__ import annotations

from prefect import task

from lmloop import tracking
from lmloop.config import PipelineConfig


@task(retries=2, retry_delay_seconds=2)
def start_tracking(config: PipelineConfig, run_name: str | None, sources: list[str]) -> str:
    """Open the MLflow run that every later stage logs into; log the config as params."""
    run_id = tracking.start_run(config.registry.experiment, run_name, {"lmloop.config_hash": config.digest()})
    tracking.log_params(run_id, {**config.flat(), "data.sources": sources})
    tracking.log_dict(run_id, config.model_dump(mode="json"), "config.json")
    return run_id


@task
def finish_tracking(run_id: str, status: str) -> None:
    tracking.finish_run(run_id, status)
