"""Registering a trained model (the first language model becomes champion) and what it trained on."""

from __future__ import annotations

from prefect import task

from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.promotion import moves
from lmloop.registry import model_registry
from lmloop.registry.report import report_registered, version_description
from lmloop.registry.values import Registered
from lmloop.training.bases import lineage_markdown
from lmloop.training.pretrain import architecture_tag
from lmloop.training.values import TrainedModel
from tasks.tracking import reporter


@task
def record_trained_data(corpus: Corpus, slice_name: str, run: Run) -> int:
    """Remember what the registered model trained on (dedup, replay) and freeze its test split as an eval slice."""
    return State(run.home.state).record_training_data(corpus, slice_name)


@task(retries=2, retry_delay_seconds=5)
def register_model(
    trained: TrainedModel,
    *,
    name: str,
    tags: dict[str, str],
    run: Run,
    task: str = "text-generation",
) -> Registered:
    """Log + register the model; the first language model ever becomes ``champion`` (under the promotion
    lock). A classifier is crowned, or not, by its own gate (:func:`tasks.finetune.judge_new_classifier`)."""
    description = version_description(run.run_id, task, trained.metrics) + lineage_markdown(tags)
    if task == "text-generation":  # a later warm start is checked against it before its run opens
        tags = {**tags, **architecture_tag(trained.path)}
    version = model_registry.register_transformers_model(
        run.run_id,
        trained.path,
        name,
        tags={**tags, **trained.metrics},
        description=description,
        input_example="Once upon",
        task=task,
    )
    if task == "text-generation":
        moves.first_champion(name, version, State(run.home.state))
    report_registered(reporter(run), name, version, task=task)
    return Registered(model_name=name, model_version=version, aliases=model_registry.aliases_of(name, version))
