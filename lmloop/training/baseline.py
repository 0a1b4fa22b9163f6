"""Scoring a classifier against what a user would otherwise run: accuracy and macro-F1, the tuned TF-IDF +
logistic-regression baseline on the same rows, the paired bootstrap of an accuracy difference, and the
confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
from sklearn.pipeline import make_union


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and scikit-learn's per-class report."""
    ids = list(range(len(names)))
    report = classification_report(y_true, y_pred, labels=ids, target_names=names, output_dict=True, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "report": report,
    }


Rows = list[tuple[str, str]]


BASELINE_C_GRID = (1.0, 4.0, 16.0, 64.0)


def tfidf_baseline(
    train: Rows, test: Rows, labels: dict[str, int], *, validation: Rows | None = None
) -> tuple[np.ndarray, float]:
    """A tuned linear baseline on the same training rows: TF-IDF of word 1-2 grams and character 2-5 grams,
    logistic regression with C chosen from :data:`BASELINE_C_GRID` by macro-F1 on ``validation`` (C=4 when
    there is none). Returns the predictions for ``test``'s rows whose label is known (the rows the classifier
    is scored on) and the C used. A classifier is only crowned when it beats this."""
    train_rows = [(t, labels[lab]) for t, lab in train if lab in labels]
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True),
    )
    x_train = features.fit_transform([t for t, _ in train_rows])
    y_train = [y for _, y in train_rows]

    held = [(t, labels[lab]) for t, lab in validation or [] if lab in labels]
    grid = BASELINE_C_GRID if held else (4.0,)
    models = {c: LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train) for c in grid}
    best = 4.0
    if held:
        x_val, y_val = features.transform([t for t, _ in held]), [y for _, y in held]
        best = max(grid, key=lambda c: f1_score(y_val, models[c].predict(x_val), average="macro", zero_division=0))
    return models[best].predict(features.transform([t for t, lab in test if lab in labels])), float(best)


def accuracy_difference_ci(
    y_true: np.ndarray, ours: np.ndarray, theirs: np.ndarray, *, samples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Paired bootstrap 95% CI of accuracy(ours) - accuracy(theirs) on the same rows."""
    diff = (ours == y_true).astype(np.float64) - (theirs == y_true).astype(np.float64)
    if len(diff) == 0:
        return 0.0, 0.0
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


PLOTTED_CLASSES = 30  # the confusion matrix shows the most frequent classes; the rest are one row and column


def _most_frequent(
    y_true: np.ndarray, y_pred: np.ndarray, names: list[str], *, limit: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """At most ``limit`` classes: the ``limit - 1`` most frequent true classes and "(other N)" for the rest,
    so the figure (its size and its text objects grow with the square of the classes: 200 labels took
    19 GB) stays bounded whatever the label count. The full per-class report is the JSON beside it."""
    if len(names) <= limit:
        return y_true, y_pred, names
    keep = np.argsort(-np.bincount(y_true, minlength=len(names)), kind="stable")[: limit - 1]
    index = np.full(len(names), limit - 1)
    index[keep] = np.arange(limit - 1)
    return index[y_true], index[y_pred], [names[k] for k in keep] + [f"(other {len(names) - limit + 1})"]


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], *, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_true, y_pred, names = _most_frequent(np.asarray(y_true), np.asarray(y_pred), names, limit=PLOTTED_CLASSES)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(names))))
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
