"""The evaluation room's report: an evaluated model's figures (overall and per slice, charted by slice in
the MLflow UI), its metrics file, its generation samples as a table, and its per-slice plot."""

from __future__ import annotations

from lmloop.core.report import Reporter
from lmloop.evaluation.plots import slice_bars
from lmloop.training.values import TrainedModel


def flatten_slices(slices: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """``slice/<kind>/<value>/<metric>`` keys, so the MLflow UI can chart any slice."""
    return {
        f"slice/{kind}/{name}/{metric}": value
        for kind, groups in slices.items()
        for name, numbers in groups.items()
        for metric, value in numbers.items()
        if metric != "documents"
    }


def report_evaluation(report: Reporter, evaluated: TrainedModel) -> None:
    report.metrics({**evaluated.metrics, **flatten_slices(evaluated.slices())})
    report.artifact(evaluated.path / "metrics.json", "evaluation")
    report.table(evaluated.samples(), "evaluation/samples.json")
    plot = slice_bars(evaluated.slices(), "bits_per_byte", evaluated.path / "plots" / "slices_bits_per_byte.png")
    report.artifact(plot, "plots")
