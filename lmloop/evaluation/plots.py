"""The evaluation room's plot: a metric per slice. (Training curves are the training room's report, the
confusion matrix lives beside the classifier, the gate's comparison is the promotion room's report.)"""

from __future__ import annotations

from pathlib import Path

from lmloop.core.plotting import plt, save


def slice_bars(slices: dict[str, dict[str, dict[str, float]]], metric: str, path: Path) -> Path:
    """One horizontal bar per slice (grouped by slice kind: source file, label) for ``metric``."""
    rows = [(f"{kind}: {name}", numbers[metric]) for kind, groups in slices.items() for name, numbers in groups.items()]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    ax.barh([name for name, _ in rows], [value for _, value in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"Test {metric} per slice")
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)
