"""Plots logged as MLflow artifacts: training curves, metrics per slice, champion versus challenger.

(The confusion matrix lives beside the classifier in :mod:`lmloop.training.classify`.) Matplotlib with the
Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Series = list[tuple[int, float]]


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
    return _save(fig, path)


def slice_bars(slices: dict[str, dict[str, dict[str, float]]], metric: str, path: Path) -> Path:
    """One horizontal bar per slice (grouped by slice kind: source file, label) for ``metric``."""
    rows = [(f"{kind}: {name}", numbers[metric]) for kind, groups in slices.items() for name, numbers in groups.items()]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    ax.barh([name for name, _ in rows], [value for _, value in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"Test {metric} per slice")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def gate_comparison(decision: dict[str, Any], path: Path, title: str) -> Path:
    """Champion versus challenger bits per byte on every slice the gate judged; the new slice first,
    each labelled with the improvement and its 95% CI."""
    judged = ([decision["new_slice"]] if decision.get("new_slice") else []) + list(decision.get("old_slices", []))
    names = [s["name"] for s in judged]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4.5))
    x = range(len(names))
    width = 0.38
    ax.bar([i - width / 2 for i in x], [s["champion_bpb"] for s in judged], width, label="champion")
    ax.bar([i + width / 2 for i in x], [s["challenger_bpb"] for s in judged], width, label="challenger")
    for i, s in enumerate(judged):
        top = max(s["champion_bpb"], s["challenger_bpb"])
        label = f"{s['improvement']:+.3f}\n[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]"
        ax.text(i, top, label, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), names, rotation=20, ha="right")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title(title)
    ax.legend()
    ax.margins(y=0.2)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
