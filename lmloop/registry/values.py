"""The registry room's value: a registered model version and the aliases it holds."""

from __future__ import annotations

from lmloop.core.values import Value
from lmloop.data.values import GateSummary


class Registered(Value):
    """A registered version and the aliases it holds; ``not_promoted``: why it holds no ``@champion`` when a
    gate judged it and said no."""

    model_name: str
    model_version: str
    aliases: list[str]
    not_promoted: str | None = None


class ModelSummary(Value):
    """What a training or fine-tuning flow made: its MLflow run, the version it registered and the aliases that
    version holds, its metrics, the data gate's summary and its work folder. ``not_promoted``: why a classifier
    got no ``@champion`` (below its baseline, or not better than the champion), None otherwise."""

    run_id: str
    model_name: str
    model_version: str
    aliases: list[str]
    metrics: dict[str, float]
    validation: GateSummary | None  # the data gate's summary of what it trained on
    work_dir: str
    not_promoted: str | None = None
