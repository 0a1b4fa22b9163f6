from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from lmloop import tracking
from lmloop.corpus import record_training_data


@task
def record_trained_data(data_dir: str, slice_name: str) -> int:
    """Remember what the registered model trained on (dedup, replay) and freeze its test split as an eval slice."""
    return record_training_data(data_dir, slice_name)


@task(retries=2, retry_delay_seconds=5)
def register_model(
    run_id: str,
    model_dir: str,
    model_name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    task: str = "text-generation",
) -> dict[str, Any]:
    """Log + register the model; the first version ever becomes ``champion``."""
    version = tracking.register_transformers_model(
        run_id, Path(model_dir), model_name, {**tags, **metrics}, _description(run_id, task, metrics), "Once upon", task
    )
    if tracking.alias_version(model_name, tracking.CHAMPION) is None:
        tracking.set_alias(model_name, tracking.CHAMPION, version)
    return {"model_name": model_name, "model_version": version, "aliases": tracking.aliases_of(model_name, version)}


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
