"""The :class:`~lmloop.core.report.Reporter` of one MLflow run: rooms report to it, MLflow records it. Pages
and log lines for people go through ``publish``, handed in by the task layer (the library never imports
Prefect's runtime). Also the registry room's own report: what a registered version and model say of
themselves."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from lmloop.core.report import Reporter, Series
from lmloop.registry import model_registry, tracking


class Publish(Protocol):
    """Prefect's side of a report: pages (Markdown, links) and the flow run's log."""

    def markdown(self, text: str, key: str, description: str) -> None: ...
    def link(self, url: str, text: str, description: str) -> None: ...
    def say(self, message: str) -> None: ...


class RunReport:
    def __init__(self, run_id: str, *, ui: str, parent_id: str | None = None, publish: Publish | None = None) -> None:
        self.run_id, self.parent_id, self._ui, self._publish = run_id, parent_id, ui, publish

    def _runs(self, with_parent: bool) -> list[str]:
        return list(dict.fromkeys([self.run_id, *([self.parent_id] if with_parent and self.parent_id else [])]))

    def metrics(self, values: dict[str, float], step: int | None = None, *, with_parent: bool = False) -> None:
        for run_id in self._runs(with_parent):
            tracking.log_metrics(run_id, values, step=step)

    def step_logger(self, metric: str = "train_loss") -> Callable[[dict[str, float], int], None]:
        return tracking.step_logger(self.run_id, metric)

    def history(self, keys: tuple[str, ...]) -> dict[str, Series]:
        return tracking.metric_history(self.run_id, keys)

    def system_metrics(self) -> AbstractContextManager[None]:
        return tracking.system_metrics(self.run_id)

    def tags(self, values: dict[str, Any], *, with_parent: bool = False) -> None:
        for run_id in self._runs(with_parent):
            tracking.set_tags(run_id, values)

    def text(self, text: str, artifact_file: str) -> None:
        tracking.log_text(self.run_id, text, artifact_file)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        tracking.log_artifact(self.run_id, path, folder)

    def table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        tracking.log_table(self.run_id, rows, artifact_file)

    def dataset(self, name: str, digest: str, source: str, *, context: str, profile: dict[str, Any]) -> None:
        tracking.log_dataset(self.run_id, name, digest, source=source, context=context, profile=profile)

    def run_url(self) -> str:
        experiment = tracking.client().get_run(self.run_id).info.experiment_id
        return f"{self._ui}/#/experiments/{experiment}/runs/{self.run_id}"

    def version_url(self, name: str, version: str) -> str:
        return f"{self._ui}/#/models/{name}/versions/{version}"

    def markdown(self, text: str, key: str, description: str) -> None:
        if self._publish is not None:
            self._publish.markdown(text, key, description)

    def link(self, url: str, text: str, description: str) -> None:
        if self._publish is not None:
            self._publish.link(url, text, description)

    def say(self, message: str) -> None:
        if self._publish is not None:
            self._publish.say(message)
        else:
            logging.getLogger("lmloop").info(message)

    def describe_version(self, name: str, version: str, text: str) -> None:
        described = tracking.client().get_model_version(name, version).description or ""
        if text not in described:
            model_registry.describe_version(name, version, f"{described}\n\n{text}".strip())


_MODEL_DESCRIPTIONS = {
    "text-generation": (
        "Causal language model trained from scratch by lmloop (`lmloop run`) and kept current by its "
        "continual-learning flow: each cycle trains a challenger from `@champion` on new data plus a replay "
        "sample of old data, scores both on the same frozen test slices, and moves `@champion` only when the "
        "challenger is better (paired bootstrap). Each version's description holds its gate report; "
        "`@previous_champion` is the one before, `@challenger` the last one rejected."
    ),
    "text-classification": (
        "Text classifier fine-tuned by lmloop (`lmloop finetune --task classification`) from the language "
        "model `{name}`'s base. `@champion` holds the best classifier on the same test rows; a classifier "
        "that does not beat the TF-IDF + logistic-regression baseline gets no alias."
    ),
}


def version_description(run_id: str, task: str, metrics: dict[str, float]) -> str:
    """The first paragraph of a registered version's description: what trained it and its key figures."""
    if task == "text-classification":
        return (
            f"Topic classifier fine-tuned by lmloop run {run_id}: accuracy {metrics['accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f} (TF-IDF + LR baseline {metrics['baseline_accuracy']:.3f})."
        )
    return (
        f"Causal LM trained by lmloop run {run_id}: test perplexity {metrics['test_perplexity']:.2f} "
        f"(unigram {metrics['unigram_perplexity']:.1f}), {metrics['test_bits_per_byte']:.3f} bits/byte."
    )


def report_registered(report: Reporter, name: str, version: str, *, task: str) -> None:
    """The registered model's description (what lmloop keeps under that name), and links from the flow run
    to its MLflow run and to the version it registered."""
    model_registry.describe_registered_model(name, _MODEL_DESCRIPTIONS[task].format(name=name))
    report.link(
        report.run_url(),
        f"MLflow run {report.run_id}",
        "The MLflow run of this flow run (params, metrics, datasets, artifacts)",
    )
    report.link(
        report.version_url(name, version),
        f"{name} version {version}",
        "The model version this flow run registered",
    )
