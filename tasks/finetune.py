from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from lmloop import stages, tracking
from lmloop.config import ModelConfig, TrainConfig
from tasks.train import log_training_curves, with_progress


@task(retries=2, retry_delay_seconds=2)
def fetch_base_model(model_name: str, ref: str, work: str, run_id: str) -> dict[str, str]:
    """Download the registered model to start from (alias or version)."""
    base = tracking.fetch_model(model_name, ref, Path(work) / "base")
    tracking.set_tags(run_id, {"lmloop.parent_model": model_name, "lmloop.parent_version": base["version"]})
    return base


@task
def finetune_lm(
    blocks: str,
    base: dict[str, str],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    lora: bool,
    work: str,
    run_id: str,
) -> dict[str, Any]:
    """Continued causal-LM training from the registered base model."""
    log = with_progress(tracking.step_logger(run_id), train_cfg.max_steps)
    out = stages.pretrain_stage(
        blocks, base["tokenizer_dir"], model_cfg, train_cfg, Path(work), log, run_id, base["model_dir"], lora
    )
    log_training_curves(run_id, work, f"Continued training from v{base['version']}")
    return out


@task
def finetune_classifier(
    data_dir: str, base: dict[str, str], train_cfg: TrainConfig, max_length: int, lora: bool, work: str, run_id: str
) -> dict[str, Any]:
    """A classification head on the base model; accuracy and macro-F1 beside TF-IDF + logistic regression."""
    out = stages.classifier_stage(
        data_dir,
        base["model_dir"],
        base["tokenizer_dir"],
        train_cfg,
        max_length,
        lora,
        Path(work),
        tracking.step_logger(run_id),
    )
    model_dir = Path(out["model_dir"])
    tracking.log_metrics(run_id, out["metrics"])
    tracking.log_artifact(run_id, model_dir / "metrics.json", "evaluation")
    tracking.log_artifact(run_id, model_dir / "confusion_matrix.png", "plots")
    log_training_curves(run_id, work, f"Classifier fine-tuning from v{base['version']}")
    return out
