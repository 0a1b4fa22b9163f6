from __future__ import annotations

from pathlib import Path

from prefect import task

from lmloop import stages, tracking
from lmloop.config import EvalConfig


def flatten_slices(slices: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """``slice/<kind>/<value>/<metric>`` keys, so the MLflow UI can chart any slice."""
    return {
        f"slice/{kind}/{name}/{metric}": value
        for kind, groups in slices.items()
        for name, numbers in groups.items()
        for metric, value in numbers.items()
        if metric != "documents"
    }


@task
def evaluate_model(
    model_dir: str, data_dir: str, blocks: str, cfg: EvalConfig, block_size: int, sources: list[str], run_id: str
) -> dict[str, float]:
    out = stages.evaluate_stage(model_dir, data_dir, blocks, cfg, block_size, sources)
    tracking.log_metrics(run_id, {**out["metrics"], **flatten_slices(out["slices"])})
    tracking.log_artifact(run_id, Path(model_dir) / "metrics.json", "evaluation")
    tracking.log_table(run_id, out["samples"], "evaluation/samples.json")
    from lmloop.plots import slice_bars

    plot = slice_bars(out["slices"], "bits_per_byte", Path(model_dir) / "plots" / "slices_bits_per_byte.png")
    tracking.log_artifact(run_id, plot, "plots")
    return out["metrics"]
