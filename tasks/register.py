from __future__ import annotations

from prefect import task

from lmloop.core import settings
from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.promotion import moves
from lmloop.registry import tracking
from lmloop.registry.values import Registered
from lmloop.training.bases import lineage_markdown
from lmloop.training.values import TrainedModel


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
    refused: str | None = None,
) -> Registered:
    """Log + register the model; the first version ever becomes ``champion`` (under the promotion lock),
    unless ``refused`` says why it must not (a classifier below its linear baseline): then no alias."""
    description = _description(run.run_id, task, trained.metrics) + lineage_markdown(tags)
    if refused:
        description += f"\n\n**Not a champion:** {refused}"
        tags = {**tags, "gate.decision": "rejected", "gate.reason": refused}
    version = tracking.register_transformers_model(
        run.run_id, trained.path, name, {**tags, **trained.metrics}, description, "Once upon", task
    )
    tracking.describe_registered_model(name, _MODEL_DESCRIPTIONS[task].format(name=name))
    if not refused:
        moves.first_champion(name, version, State(run.home.state))
    _link_back(run, name, version)
    return Registered(model_name=name, model_version=version, aliases=tracking.aliases_of(name, version))


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


def _link_back(run: Run, name: str, version: str) -> None:
    """The Prefect flow run links to the MLflow run and the model version it registered."""
    from prefect.artifacts import create_link_artifact

    ui = settings.mlflow_ui_url()
    experiment = tracking.client().get_run(run.run_id).info.experiment_id
    create_link_artifact(
        f"{ui}/#/experiments/{experiment}/runs/{run.run_id}",
        link_text=f"MLflow run {run.run_id}",
        description="The MLflow run of this flow run (params, metrics, datasets, artifacts)",
    )
    create_link_artifact(
        f"{ui}/#/models/{name}/versions/{version}",
        link_text=f"{name} version {version}",
        description="The model version this flow run registered",
    )


def _description(run_id: str, task: str, metrics: dict[str, float]) -> str:
    if task == "text-classification":
        return (
            f"Topic classifier fine-tuned by lmloop run {run_id}: accuracy {metrics['accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f} (TF-IDF + LR baseline {metrics['baseline_accuracy']:.3f})."
        )
    return (
        f"Causal LM trained by lmloop run {run_id}: test perplexity {metrics['test_perplexity']:.2f} "
        f"(unigram {metrics['unigram_perplexity']:.1f}), {metrics['test_bits_per_byte']:.3f} bits/byte."
    )
