import numpy as np
import pytest

from lmloop.evaluate import DocScores
from lmloop.gate import decide, paired_bootstrap, report_markdown

RNG = np.random.default_rng(0)
BYTES = RNG.integers(200, 400, size=300)


def _scores(bits_per_byte: float, noise: float = 0.05, seed: int = 1) -> DocScores:
    rng = np.random.default_rng(seed)
    per_doc = np.clip(bits_per_byte + rng.normal(0, noise, size=len(BYTES)), 0.01, None)
    return DocScores(nll=per_doc * BYTES * np.log(2), tokens=BYTES // 4, bytes=BYTES)


def test_paired_bootstrap_interval_brackets_the_improvement() -> None:
    cmp = paired_bootstrap(_scores(1.0), _scores(0.9, seed=2), "new")
    assert cmp.improvement == pytest.approx(0.1, abs=0.01)
    assert cmp.ci_low < cmp.improvement < cmp.ci_high and cmp.ci_low > 0.08


def test_promotes_only_when_the_whole_interval_clears_the_margin() -> None:
    champ, better, same = _scores(1.0), _scores(0.9, seed=2), _scores(1.0, seed=3)
    assert decide(("new", champ, better), [], margin=0.01, tolerance=0.02).promote
    rejected = decide(("new", champ, same), [], margin=0.01, tolerance=0.02)
    assert not rejected.promote and "not entirely above the margin" in rejected.reason
    assert not decide(("new", champ, better), [], margin=0.2, tolerance=0.02).promote


def test_forgetting_guard_and_classification_tolerance_veto_promotion() -> None:
    champ, better = _scores(1.0), _scores(0.9, seed=2)
    forgot = decide(("new", champ, better), [("old-A", _scores(0.8, seed=4), _scores(0.9, seed=5))], 0.01, 0.02)
    assert not forgot.promote and "forgetting on 'old-A'" in forgot.reason
    kept = decide(("new", champ, better), [("old-A", _scores(0.8, seed=4), _scores(0.81, seed=5))], 0.01, 0.02)
    assert kept.promote
    dropped = decide(("new", champ, better), [], 0.01, 0.02, {"accuracy": (0.9, 0.8, 0.05)})
    assert not dropped.promote and "accuracy dropped" in dropped.reason
    assert "REJECTED" in report_markdown(dropped, "1", "2") and "| new |" in report_markdown(dropped, "1", "2")


def test_mismatched_documents_are_refused() -> None:
    short = DocScores(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="same documents"):
        paired_bootstrap(_scores(1.0), short, "new")
