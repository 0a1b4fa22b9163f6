from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from lmloop import stages, tracking
from lmloop.config import ModelConfig, TrainConfig


@task
def pretrain_model(
    blocks: str, tokenizer: str, model_cfg: ModelConfig, train_cfg: TrainConfig, work: str, run_id: str
) -> dict[str, Any]:
    """Train from scratch; loss, learning rate, grad norm and tokens/s go to MLflow every ``log_every`` steps."""

    def log(metrics: dict[str, float], step: int) -> None:
        tracking.log_metrics(run_id, metrics, step)

    out = stages.pretrain_stage(blocks, tokenizer, model_cfg, train_cfg, Path(work), log)
    tracking.log_metrics(
        run_id,
        {
            "train_tokens_per_second": out["tokens_per_second"],
            "parameters": out["parameters"],
            "train_tokens": out["tokens"],
        },
    )
    return out
