"""The training room's report: figures by step (with a progress line in the flow's log), the run's summary
figures, and its loss and learning-rate curves."""

from __future__ import annotations

from pathlib import Path

from lmloop.core.plotting import plt, save
from lmloop.core.report import Reporter, Series
from lmloop.training.train import LogFn
from lmloop.training.values import TrainedModel

SUMMARY_METRICS = ("tokens_per_second", "parameters", "tokens", "mfu_measured_peak", "mfu_datasheet", "resumed_from")
SUMMARY_METRICS += ("devices", "micro_batch_size", "grad_accum", "threads")


def with_progress(report: Reporter, total: int) -> LogFn:
    """Log figures by step (a resumed run skips the steps it logged) and a plain progress line at each."""
    log = report.step_logger()

    def both(metrics: dict[str, float], step: int) -> None:
        log(metrics, step)
        report.say(
            f"step {step}/{total}  loss {metrics['train_loss']:.4f}  lr {metrics['learning_rate']:.2e}  "
            f"{metrics['tokens_per_second']:.0f} tokens/s"
        )

    return both


def training_curves(history: dict[str, Series], path: Path, title: str = "Training") -> Path:
    """Loss (train and, when logged, validation) and learning rate against the optimizer step."""
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key, style in (("train_loss", "-"), ("val_loss", "o--")):
        if history.get(key):
            steps, values = zip(*history[key], strict=True)
            loss_ax.plot(steps, values, style, label=key)
    loss_ax.set_ylabel("loss (nats/token)")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)
    loss_ax.set_title(title)
    if history.get("learning_rate"):
        steps, values = zip(*history["learning_rate"], strict=True)
        lr_ax.plot(steps, values, color="tab:green")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    lr_ax.grid(alpha=0.3)
    return save(fig, path)


def report_curves(report: Reporter, work: Path, title: str) -> None:
    """Loss and learning-rate curves from the run's own metric history, as ``plots/training_curves.png``."""
    history = report.history(("train_loss", "val_loss", "learning_rate"))
    report.artifact(training_curves(history, work / "plots" / "training_curves.png", title), "plots")


def report_training(report: Reporter, trained: TrainedModel, *, work: Path, title: str) -> None:
    """The run's summary figures (``train_<name>``) and its curves."""
    summary = {k: trained.summary[k] for k in SUMMARY_METRICS if trained.summary.get(k) is not None}
    report.metrics({f"train_{k}": v for k, v in summary.items()})
    report_curves(report, work, title)


def report_classifier(report: Reporter, trained: TrainedModel, *, work: Path, title: str) -> None:
    """A classifier's figures beside its baseline's, its metrics file, confusion matrix and curves."""
    report.metrics(trained.metrics)
    report.artifact(trained.path / "metrics.json", "evaluation")
    report.artifact(trained.path / "confusion_matrix.png", "plots")
    report_curves(report, work, title)
