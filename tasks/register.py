from __future__ import annotations

from prefect import task

from lmloop import promotion, tracking
from lmloop.contracts import Corpus, Registered, Run, TrainedModel
from lmloop.state import State


@task
def record_trained_data(corpus: Corpus, slice_name: str, run: Run) -> int:
    """Remember what the registered model trained on (dedup, replay) and freeze its test split as an eval slice."""
    return State(run.home.state).record_training_data(corpus, slice_name)


@task(retries=2, retry_delay_seconds=5)
def register_model(
    trained: TrainedModel, *, name: str, tags: dict[str, str], run: Run, task: str = "text-generation"
) -> Registered:
    """Log + register the model; the first version ever becomes ``champion`` (under the promotion lock)."""
    description = _description(run.run_id, task, trained.metrics)
    version = tracking.register_transformers_model(
        run.run_id, trained.path, name, {**tags, **trained.metrics}, description, "Once upon", task
    )
    promotion.first_champion(name, version, State(run.home.state))
    return Registered(model_name=name, model_version=version, aliases=tracking.aliases_of(name, version))


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
