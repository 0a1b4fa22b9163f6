"""Deployments: the continual cycle on a cron schedule (never two at once), training for manual runs.

``lmloop deploy`` serves both against the Prefect server named by ``PREFECT_API_URL`` (start one
with ``prefect server start``). Parameters are typed (``PipelineConfig``), so the Prefect UI shows a
form for manual runs; ``prefect deployment run continual/continual`` triggers a cycle by hand.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.continual import continual_flow
from flows.training import training_flow
from lmloop.config import PipelineConfig


def deployments(config: PipelineConfig, cron: str | None = None) -> list:
    params = {"config": config.model_dump(mode="json")}
    continual = continual_flow.to_deployment(
        name="continual",
        cron=cron or config.continual.cron,
        parameters=params,
        # one cycle at a time: a scheduled run that finds one in progress is cancelled, not queued behind it
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="Find new data, train from @champion with replay, gate, promote only a better model.",
        tags=["lmloop"],
    )
    training = training_flow.to_deployment(
        name="training",
        parameters=params,
        description="Train from scratch on data.sources (set them in the form) and register.",
        tags=["lmloop"],
    )
    return [continual, training]


def serve_deployments(config: PipelineConfig, cron: str | None = None) -> None:
    """Blocks: runs scheduled and manually triggered flow runs until interrupted."""
    serve(*deployments(config, cron))
