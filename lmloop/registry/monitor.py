"""The monitoring timeline: one MLflow run per registered model, ``monitor-<model>``, with one step per
continual cycle (drift, the champion's fit on the batch and on its reference slices, the batch's size, the
decision, the champion's version), so the MLflow UI's chart view shows quality over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmloop.registry import tracking

MONITOR_TAG = "lmloop.monitor"
DECISIONS = {"deferred": 0.0, "rejected": 1.0, "promoted": 2.0, "data-rejected": 3.0}
TIMELINE = (
    "drift_auc",
    "drift_auc_threshold",
    "champion_batch_bits_per_byte",
    "champion_reference_bits_per_byte",
    "batch_documents",
    "pending_documents",
    "decision",
    "champion_version",
)


def monitor_run(experiment: str, model: str, *, create: bool = True) -> str | None:
    """The model's monitoring run (the oldest, should two have been made), made on first use when ``create``."""
    experiment_id = tracking.ensure_experiment(experiment)
    found = tracking.client().search_runs(
        [experiment_id], f"tags.`{MONITOR_TAG}` = '{model}'", order_by=["attributes.start_time ASC"], max_results=1
    )
    if found:
        return found[0].info.run_id
    if not create:
        return None
    note = (
        f"Continual-learning timeline of **{model}**: one step per cycle. `decision`: 0 deferred, 1 rejected, "
        "2 promoted, 3 data rejected. Open *Model metrics* to see drift and fit over time."
    )
    run_id = tracking.start_run(
        experiment, f"monitor-{model}", {MONITOR_TAG: model, "mlflow.note.content": note, "lmloop.kind": "monitor"}
    )
    tracking.finish_run(run_id)
    return run_id


def log_cycle(run_id: str, figures: dict[str, float], line: str) -> int:
    """One cycle as the next step of the timeline, ``line`` its one-line account; returns its step (1 first)."""
    step = tracking.last_step(run_id, "decision") + 1
    tracking.log_metrics(run_id, figures, step=step)
    tracking.set_tags(run_id, {"lmloop.last_cycle": line, f"lmloop.cycle.{step:05d}": line})
    return step


def cycle_lines(run_id: str) -> dict[int, str]:
    """Each step's one-line account, by step."""
    tags = tracking.client().get_run(run_id).data.tags
    return {int(k.rsplit(".", 1)[1]): v for k, v in tags.items() if k.startswith("lmloop.cycle.")}


def log_plot(run_id: str, path: Path) -> None:
    tracking.log_artifact(run_id, path, "monitor")


def timeline(run_id: str) -> list[dict[str, Any]]:
    """The steps logged so far, oldest first: each a dict of the figures logged at that step."""
    history = tracking.metric_history(run_id, TIMELINE)
    steps: dict[int, dict[str, Any]] = {}
    for key, points in history.items():
        for step, value in points:
            steps.setdefault(step, {"step": step})[key] = value
    return [steps[s] for s in sorted(steps)]


def decision_name(code: float) -> str:
    return {v: k for k, v in DECISIONS.items()}.get(code, "?")
