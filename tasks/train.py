from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from lmloop import stages, tracking
from lmloop.config import ModelConfig, TrainConfig
from lmloop.train import LogFn


def with_progress(log: LogFn, total: int) -> LogFn:
    """Also write a plain progress line to the flow's log at every logging step."""
    logger = get_run_logger()

    def both(metrics: dict[str, float], step: int) -> None:
        log(metrics, step)
        logger.info(
            "step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s",
            step,
            total,
            metrics["train_loss"],
            metrics["learning_rate"],
            metrics["tokens_per_second"],
        )

    return both


def log_training_curves(run_id: str, work: str, title: str) -> None:
    """Loss and learning-rate curves from the run's own metric history, as ``plots/training_curves.png``."""
    from lmloop.plots import training_curves

    history = tracking.metric_history(run_id, ("train_loss", "val_loss", "learning_rate"))
    path = training_curves(history, Path(work) / "plots" / "training_curves.png", title)
    tracking.log_artifact(run_id, path, "plots")


@task
def pretrain_model(
    blocks: str, tokenizer: str, model_cfg: ModelConfig, train_cfg: TrainConfig, work: str, run_id: str
) -> dict[str, Any]:
    """Train (resuming from the newest good checkpoint); metrics every ``log_every`` steps, never a step twice."""
    with tracking.system_metrics(run_id):
        log = with_progress(tracking.step_logger(run_id), train_cfg.max_steps)
        out = stages.pretrain_stage(blocks, tokenizer, model_cfg, train_cfg, Path(work), log, run_id)
    keys = ("tokens_per_second", "parameters", "tokens", "mfu_measured_peak", "mfu_datasheet", "resumed_from")
    keys += ("micro_batch_size", "grad_accum", "threads")
    summary = {k: out[k] for k in keys if out[k] is not None}
    tracking.log_metrics(run_id, {f"train_{k}": v for k, v in summary.items()})
    log_training_curves(run_id, work, "Pretraining")
    return out
