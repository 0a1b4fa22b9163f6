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
    """Train (resuming from the newest good checkpoint); metrics every ``log_every`` steps, never a step twice."""
    with tracking.system_metrics(run_id):
        log = tracking.step_logger(run_id)
        out = stages.pretrain_stage(blocks, tokenizer, model_cfg, train_cfg, Path(work), log, run_id)
    summary = {k: out[k] for k in ("tokens_per_second", "parameters", "tokens", "mfu", "resumed_from")}
    tracking.log_metrics(run_id, {f"train_{k}": v for k, v in summary.items()})
    return out
