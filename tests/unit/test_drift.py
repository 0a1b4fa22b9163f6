"""The retraining policy's measures and rule: the domain classifier's AUC against chance, and which trigger
retrains."""

import numpy as np
import pytest

from lmloop.continual.assess import should_retrain
from lmloop.continual.drift import ContentDrift, chance_auc, content_drift
from lmloop.core.config import RetrainPolicy

WORDS = [f"w{i}" for i in range(300)]


def _docs(rng: np.random.Generator, n: int, weights: np.ndarray) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=20, p=weights)) for _ in range(n)]


def test_the_same_distribution_is_not_drift_and_a_shifted_one_is() -> None:
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(len(WORDS)))
    same = content_drift(_docs(rng, 300, base), _docs(rng, 300, base), floor=0.55)
    assert not same.detected and abs(same.auc - 0.5) < 0.06, same
    moved = base.copy()
    moved[:30] *= 4  # a tenth of the vocabulary four times as frequent
    moved /= moved.sum()
    shifted = content_drift(_docs(rng, 300, moved), _docs(rng, 300, base), floor=0.55)
    assert shifted.detected and shifted.auc > 0.7, shifted
    assert set(shifted.batch_words) & set(WORDS[:30]), "the words that moved are named"


def test_the_threshold_is_what_chance_reaches_at_small_sizes() -> None:
    assert chance_auc(1000, 1000) < 0.55 < chance_auc(40, 40)
    rng = np.random.default_rng(1)
    base = rng.dirichlet(np.ones(len(WORDS)))
    small = content_drift(_docs(rng, 40, base), _docs(rng, 40, base), floor=0.55)
    assert small.threshold == pytest.approx(chance_auc(40, 40)) and not small.detected
    few = content_drift(["a b"] * 5, ["c d"] * 5, floor=0.55)
    assert not few.detected and few.auc == 0.5, "no verdict on a handful of documents"


def _quiet() -> ContentDrift:
    return ContentDrift(auc=0.5, threshold=0.55, detected=False, batch_documents=100, trained_documents=100)


def test_each_trigger_retrains_and_none_defers() -> None:
    policy = RetrainPolicy(new_documents=1000, max_age_days=7, fit_bits=0.05)
    retrain, fit, reasons = should_retrain(policy, content=_quiet(), fit_gap=0.01, pending=10, age_days=1)
    assert not retrain and not fit and "no drift" in reasons[0] and "10 of 1000 documents" in reasons[0]
    drifted = _quiet().model_copy(update={"auc": 0.8, "detected": True})
    assert should_retrain(policy, content=drifted, fit_gap=0.0, pending=10, age_days=1)[0]
    assert should_retrain(policy, content=_quiet(), fit_gap=0.2, pending=10, age_days=1)[:2] == (True, True)
    assert should_retrain(policy, content=_quiet(), fit_gap=0.0, pending=1000, age_days=1)[0]
    assert should_retrain(policy, content=_quiet(), fit_gap=0.0, pending=10, age_days=8)[0]
    off = RetrainPolicy(new_documents=None, max_age_days=None, fit_bits=None)
    assert not should_retrain(off, content=_quiet(), fit_gap=5.0, pending=10**9, age_days=10**4)[0]
    assert should_retrain(off.model_copy(update={"always": True}), content=_quiet(), fit_gap=0, pending=0, age_days=0)[
        0
    ]
