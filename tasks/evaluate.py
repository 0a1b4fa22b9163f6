from __future__ import annotations

from pathlib import Path

from prefect import task

from lmloop import stages, tracking
from lmloop.config import EvalConfig


@task
def evaluate_model(
    model_dir: str, data_dir: str, blocks: str, cfg: EvalConfig, block_size: int, run_id: str
) -> dict[str, float]:
    out = stages.evaluate_stage(model_dir, data_dir, blocks, cfg, block_size)
    tracking.log_metrics(run_id, out["metrics"])
    tracking.log_artifact(run_id, Path(model_dir) / "metrics.json", "evaluation")
    tracking.log_table(run_id, out["samples"], "evaluation/samples.json")
    return out["metrics"]
