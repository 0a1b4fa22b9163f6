from __future__ import annotations

from prefect import task

from lmloop.core.config import EvalConfig
from lmloop.core.values import Run
from lmloop.data.values import Corpus
from lmloop.evaluation.evaluate import evaluate
from lmloop.registry import tracking
from lmloop.training.values import Blocks, TrainedModel


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
    trained: TrainedModel, *, corpus: Corpus, blocks: Blocks, cfg: EvalConfig, sources: list[str], run: Run
) -> TrainedModel:
    out = evaluate(trained, corpus, blocks, cfg, sources)
    tracking.log_metrics(run.run_id, {**out.metrics, **flatten_slices(out.slices())})
    tracking.log_artifact(run.run_id, out.path / "metrics.json", "evaluation")
    tracking.log_table(run.run_id, out.samples(), "evaluation/samples.json")
    from lmloop.evaluation.plots import slice_bars

    plot = slice_bars(out.slices(), "bits_per_byte", out.path / "plots" / "slices_bits_per_byte.png")
    tracking.log_artifact(run.run_id, plot, "plots")
    return out
