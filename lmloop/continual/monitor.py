"""One continual cycle on the model's monitoring timeline (:mod:`lmloop.registry.monitor`): its figures
as the next step, a plot of the whole timeline as the run's artifact, and the lines ``lmloop status`` prints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmloop.continual.assess import Assessment
from lmloop.core import locks
from lmloop.core.plotting import plt, save
from lmloop.registry import monitor


def record_cycle(
    experiment: str,
    model: str,
    *,
    assessment: Assessment | None,
    decision: str,
    champion: str | None,
    batch: str,
    work: Path,
    lock: Path,
) -> int:
    """Log the cycle as the next step of ``monitor-<model>`` (made on first use; one at a time, under
    ``lock``) and redraw the timeline plot; returns the step."""
    figures = {"decision": monitor.DECISIONS[decision], **(assessment.numbers() if assessment else {})}
    if champion is not None and champion.isdigit():
        figures["champion_version"] = float(champion)
    line = f"{time.strftime('%Y-%m-%d %H:%M')} {batch}: {decision}" + (f", champion v{champion}" if champion else "")
    with locks.exclusive(f"monitor:{model}", lock):
        run_id = monitor.monitor_run(experiment, model)
        assert run_id is not None
        step = monitor.log_cycle(run_id, figures, line)
        monitor.log_plot(run_id, plot_timeline(monitor.timeline(run_id), work / "monitor" / "timeline.png", model))
    return step


def last_cycles(experiment: str, model: str, count: int = 5) -> list[str]:
    """The last ``count`` cycles of ``model``, one line each, oldest first (empty before any cycle)."""
    run_id = monitor.monitor_run(experiment, model, create=False)
    if run_id is None:
        return []
    lines = monitor.cycle_lines(run_id)
    rows = {int(r["step"]): r for r in monitor.timeline(run_id)}
    return [_line(lines[step], rows.get(step, {})) for step in sorted(lines)[-count:]]


def _line(text: str, row: dict[str, Any]) -> str:
    extra = []
    if "drift_auc" in row:
        extra.append(f"drift AUC {row['drift_auc']:.3f}")
    if "champion_batch_bits_per_byte" in row:
        extra.append(
            f"champion {row['champion_batch_bits_per_byte']:.3f} bits/byte on the batch, "
            f"{row['champion_reference_bits_per_byte']:.3f} on reference"
        )
    if "batch_documents" in row:
        extra.append(f"{row['batch_documents']:.0f} documents")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def plot_timeline(rows: list[dict[str, Any]], path: Path, model: str) -> Path:
    """Drift AUC and the champion's fit (batch vs reference) per cycle, decisions marked."""
    steps = [r["step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for key, label in (
        ("champion_batch_bits_per_byte", "on the batch"),
        ("champion_reference_bits_per_byte", "on reference slices"),
    ):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            top.plot(*zip(*points, strict=True), marker="o", label=f"champion {label}")
    top.set_ylabel("bits per byte")
    top.legend(loc="best", fontsize=8)
    top.set_title(f"{model}: quality over cycles")
    points = [(r["step"], r["drift_auc"]) for r in rows if "drift_auc" in r]
    if points:
        bottom.plot(*zip(*points, strict=True), marker="o", color="tab:purple", label="drift AUC")
    thresholds = [(r["step"], r["drift_auc_threshold"]) for r in rows if "drift_auc_threshold" in r]
    if thresholds:
        bottom.plot(*zip(*thresholds, strict=True), linestyle="--", color="grey", label="threshold")
    colours = {0.0: "tab:grey", 1.0: "tab:red", 2.0: "tab:green", 3.0: "black"}
    for r in rows:
        if "decision" in r:
            bottom.axvline(r["step"], color=colours.get(r["decision"], "grey"), alpha=0.25)
    bottom.set_ylabel("domain classifier AUC")
    bottom.set_xlabel("cycle (grey deferred, red rejected, green promoted, black data rejected)")
    bottom.legend(loc="best", fontsize=8)
    if steps:
        bottom.set_xticks(steps)
    return save(fig, path)
