"""Deployments: the continual cycle on a cron schedule (never two at once), training for manual runs.

``lmloop deploy`` serves both against the Prefect server named by ``PREFECT_API_URL`` (start one
with ``prefect server start``); ``lmloop deploy --pool NAME`` registers them in a process work pool
instead, for ``prefect worker start --pool NAME`` on any number of machines. Parameters are typed (``PipelineConfig``), so the Prefect UI shows a
form for manual runs; ``prefect deployment run continual/continual`` triggers a cycle by hand.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.continual import continual_flow
from flows.training import training_flow
from lmloop.core.config import PipelineConfig
from lmloop.core.settings import PROJECT_ROOT


def _schedule(config: PipelineConfig, cron: str | None, interval: float | None) -> dict[str, Any]:
    """An interval (seconds) when one is given, else the cron expression (the option's, else the config's)."""
    if interval is not None:
        return {"interval": timedelta(seconds=interval)}
    return {"cron": cron or config.continual.cron}


def _settings(config: PipelineConfig, cron: str | None, interval: float | None = None) -> dict[str, dict[str, Any]]:
    """Per deployment name: what both ways of deploying share."""
    # only what the config set: a warm start takes unset architecture fields from @champion
    params = {"config": config.model_dump(mode="json", exclude_unset=True)}
    return {
        "continual": {
            **_schedule(config, cron, interval),
            "parameters": params,
            # one cycle at a time: a scheduled run that finds one in progress is cancelled, not queued behind it
            "concurrency_limit": ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            "description": "Find new data, train from @champion with replay, gate, promote only a better model.",
            "tags": ["lmloop"],
        },
        "training": {
            "parameters": params,
            "description": "Train from scratch on data.sources (set them in the form) and register.",
            "tags": ["lmloop"],
        },
    }


FLOWS = {
    "continual": (continual_flow, "flows/continual.py:continual_flow"),
    "training": (training_flow, "flows/training.py:training_flow"),
}


def deployments(config: PipelineConfig, cron: str | None = None, interval: float | None = None) -> list:
    return [FLOWS[name][0].to_deployment(name=name, **kw) for name, kw in _settings(config, cron, interval).items()]


def deploy_to_pool(
    config: PipelineConfig, pool: str, cron: str | None = None, *, interval: float | None = None
) -> list[str]:
    """Register both deployments in the process work pool ``pool`` (created when missing); workers
    started with ``prefect worker start --pool POOL`` run them from this checkout. Returns their ids."""
    from prefect import flow as prefect_flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    ids = []
    for name, kw in _settings(config, cron, interval).items():
        remote = prefect_flow.from_source(source=str(PROJECT_ROOT), entrypoint=FLOWS[name][1])
        ids.append(
            str(remote.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False, **kw))
        )
    return ids


def serve_deployments(config: PipelineConfig, cron: str | None = None, interval: float | None = None) -> None:
    """Blocks: runs scheduled and manually triggered flow runs until interrupted."""
    serve(*deployments(config, cron, interval))


NOTIFY_BLOCK = "lmloop-promotion-webhook"


def notify_on_promotion(webhook: str, model: str) -> str:
    """A Prefect Automation: every ``lmloop.model.promoted`` event of ``model`` POSTs a JSON message to
    ``webhook`` (kept in the Webhook block ``lmloop-promotion-webhook``, its URL a secret). Deploying again
    replaces it. Returns the automation's id."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture

    block_id = Webhook(method="POST", url=webhook).save(NOTIFY_BLOCK, overwrite=True)
    name = f"lmloop: {model} promoted -> webhook"
    with contextlib.suppress(ValueError):  # not there yet
        Automation.read(name=name).delete()
    message = (
        '{"text": "{{ event.resource.name }} v{{ event.payload.version }} promoted (was v{{ event.payload.previous }}):'
        ' {{ event.payload.reason }}", "model": "{{ event.resource.name }}", "version": "{{ event.payload.version }}"}'
    )
    automation = Automation(
        name=name,
        description=f"lmloop deploy --notify-webhook: tell the team when {model}'s @champion moves.",
        trigger=EventTrigger(
            expect={"lmloop.model.promoted"},
            match={"prefect.resource.id": f"lmloop.model.{model}"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=message)],
    ).create()
    return str(automation.id)
