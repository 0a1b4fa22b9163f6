"""Training tasks: pretraining from scratch (or continuing a pretrained causal LM)."""

from __future__ import annotations

from prefect import task

from lmloop.core.config import ModelConfig, TrainConfig
from lmloop.core.values import Run
from lmloop.training import pretrain
from lmloop.training.report import report_training, with_progress
from lmloop.training.values import Blocks, TrainedModel
from tasks.tracking import reporter


@task
def pretrain_model(
    blocks: Blocks,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run: Run,
    init_from: str | None = None,
    allow_pickle: bool = False,
) -> TrainedModel:
    """Train (resuming from the newest good checkpoint); metrics every ``log_every`` steps, never a step twice.
    ``init_from``: a pretrained model folder to continue instead of a model built from ``model_cfg``."""
    report = reporter(run)
    with report.system_metrics():
        out = pretrain.train_model(
            blocks,
            model_cfg=model_cfg,
            train_cfg=train_cfg,
            out=run.work,
            log=with_progress(report, train_cfg.max_steps),
            run_id=run.run_id,
            cache=run.home.cache,
            init_from=init_from,
            allow_pickle=allow_pickle,
        )
    report_training(report, out, work=run.work, title="Continued pretraining" if init_from else "Pretraining")
    return out
