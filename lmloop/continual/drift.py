"""Drift, measured before anything is trained: does a new batch look like what the champion already models?

Two measures, each cheap and bounded by a sample:

- **content drift**: a domain classifier (TF-IDF + logistic regression, the method Evidently uses for text)
  tells the batch from text the champion trained on; its cross-validated ROC AUC is 0.5 when the two cannot
  be told apart. Drift is an AUC above the configured floor *and* above what chance reaches at these sample
  sizes (the 99th percentile of a random scorer's AUC, from the Mann-Whitney statistic's null distribution);
- **fit drift**: the champion's bits per byte on the batch against its own on the frozen reference slices.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from lmloop.core.values import Value

NULL_QUANTILE = 0.99  # a batch that does not differ is called drifted once in a hundred batches at most


class ContentDrift(Value):
    """The domain classifier's verdict: ``auc`` against ``threshold``; the words that most tell the batch
    apart (``batch_words``) and the trained text apart (``trained_words``)."""

    auc: float
    threshold: float
    detected: bool
    batch_documents: int
    trained_documents: int
    batch_words: list[str] = []
    trained_words: list[str] = []


def chance_auc(n_batch: int, n_trained: int, quantile: float = NULL_QUANTILE) -> float:
    """The AUC a scorer unrelated to the labels exceeds with probability ``1 - quantile`` (normal
    approximation of the Mann-Whitney U statistic: mean 1/2, variance (n1 + n2 + 1) / (12 n1 n2))."""
    sd = math.sqrt((n_batch + n_trained + 1) / (12.0 * n_batch * n_trained))
    return 0.5 + float(norm.ppf(quantile)) * sd


def content_drift(batch: list[str], trained: list[str], *, floor: float, seed: int = 0) -> ContentDrift:
    """Cross-validated (5 folds, stratified) ROC AUC of a classifier telling ``batch`` from ``trained``.
    Fewer than 10 documents on a side: no verdict (AUC 0.5, not detected)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    n1, n2 = len(batch), len(trained)
    if min(n1, n2) < 10:
        return ContentDrift(auc=0.5, threshold=1.0, detected=False, batch_documents=n1, trained_documents=n2)
    texts, labels = [*batch, *trained], np.r_[np.ones(n1), np.zeros(n2)]
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50_000, sublinear_tf=True),
        LogisticRegression(max_iter=1000, C=1.0),
    )
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, texts, labels, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(labels, scores))
    threshold = max(floor, chance_auc(n1, n2))
    batch_words, trained_words = _telling_words(model.fit(texts, labels)) if auc > threshold else ([], [])
    return ContentDrift(
        auc=auc,
        threshold=threshold,
        detected=auc > threshold,
        batch_documents=n1,
        trained_documents=n2,
        batch_words=batch_words,
        trained_words=trained_words,
    )


def _telling_words(model: object, k: int = 8) -> tuple[list[str], list[str]]:
    """The ``k`` terms whose weights most point at the batch, and at the trained text."""
    vectorizer, classifier = model.steps[0][1], model.steps[1][1]  # type: ignore[attr-defined]
    terms, weights = vectorizer.get_feature_names_out(), classifier.coef_[0]
    order = np.argsort(weights)
    return [str(terms[i]) for i in order[::-1][:k]], [str(terms[i]) for i in order[:k]]
