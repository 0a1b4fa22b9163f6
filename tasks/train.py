"""Training tasks: pretraining from scratch, and the helpers every training task shares."""

from __future__ import annotations

from prefect import get_run_logger, task

from lmloop.core.config import ModelConfig, TrainConfig
from lmloop.core.values import Run
from lmloop.registry import tracking
from lmloop.training import pretrain
from lmloop.training.train import LogFn
from lmloop.training.values import Blocks, TrainedModel

SUMMARY_METRICS = ("tokens_per_second", "parameters", "tokens", "mfu_measured_peak", "mfu_datasheet", "resumed_from")
SUMMARY_METRICS += ("micro_batch_size", "grad_accum", "threads")


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


def log_training_curves(run: Run, title: str) -> None:
    """Loss and learning-rate curves from the run's own metric history, as ``plots/training_curves.png``."""
    from lmloop.evaluation.plots import training_curves

    history = tracking.metric_history(run.run_id, ("train_loss", "val_loss", "learning_rate"))
    path = training_curves(history, run.work / "plots" / "training_curves.png", title)
    tracking.log_artifact(run.run_id, path, "plots")


@task
def pretrain_model(
    blocks: Blocks, *, model_cfg: ModelConfig, train_cfg: TrainConfig, run: Run, init_from: str | None = None
) -> TrainedModel:
    """Train (resuming from the newest good checkpoint); metrics every ``log_every`` steps, never a step twice.
    ``init_from``: a pretrained model folder to continue instead of a model built from ``model_cfg``."""
    with tracking.system_metrics(run.run_id):
        log = with_progress(tracking.step_logger(run.run_id), train_cfg.max_steps)
        out = pretrain.train_model(
            blocks,
            model_cfg=model_cfg,
            train_cfg=train_cfg,
            out=run.work,
            log=log,
            run_id=run.run_id,
            cache=run.home.cache,
            init_from=init_from,
        )
    summary = {k: out.summary[k] for k in SUMMARY_METRICS if out.summary.get(k) is not None}
    tracking.log_metrics(run.run_id, {f"train_{k}": v for k, v in summary.items()})
    log_training_curves(run, "Continued pretraining" if init_from else "Pretraining")
    return out
