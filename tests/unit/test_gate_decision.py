import contextlib

import numpy as np
import pytest

from lmloop.evaluation.evaluate import DocScores
from lmloop.promotion.gate import decide, paired_bootstrap, report_markdown

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


def test_labels_whose_documents_the_champion_now_fits_worse_leave_the_forgetting_guard() -> None:
    """The data that still holds: a label drifted when the champion is clearly worse on its new documents
    than on its old ones; stable labels and unlabelled documents stay under the guard."""
    from lmloop.continual.judge import drifted_labels, still_holding

    def rows(labels: list) -> list[dict]:
        return [{"text": "t", "doc_id": str(i), "label": label} for i, label in enumerate(labels)]

    def scores(bpb: list[float]) -> DocScores:
        size = np.full(len(bpb), 100)
        return DocScores(nll=np.array(bpb) * size * np.log(2), tokens=size // 4, bytes=size)

    new = rows(["news"] * 6 + ["sport"] * 6 + [None] * 6 + ["rare"] * 2)
    old = rows(["news"] * 6 + ["sport"] * 6 + ["rare"] * 6 + [None] * 6)
    champion_new = scores([2.0] * 6 + [0.62] * 6 + [3.0] * 6 + [3.0] * 2)
    champion_old = scores([0.6] * 6 + [0.6] * 6 + [0.6] * 6 + [0.6] * 6)
    drifted = drifted_labels(new, champion_new, old, old_scores=champion_old, bits=0.1)
    assert list(drifted) == ["news"] and drifted["news"] == pytest.approx((0.6, 2.0))
    assert still_holding(old, drifted).tolist() == [False] * 6 + [True] * 18, "sport stable, rare too few, None kept"
    assert drifted_labels(new, champion_new, old, old_scores=champion_old, bits=5.0) == {}


@contextlib.contextmanager
def _registry(tmp_path, versions: int):
    """A sqlite registry in ``tmp_path`` with model "m" of ``versions`` versions; this process points at it."""
    from tests.conftest import mlflow_store, store_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_store(uri):
        client = store_client(uri)
        client.create_registered_model("m")
        for _ in range(versions):
            client.create_model_version("m", str(tmp_path), run_id=None)
        yield client


def test_a_cycle_not_yet_judged_is_re_planned_when_the_champion_moved(tmp_path) -> None:
    """A rollback (or another cycle's promotion) before a cycle was judged: its recorded parent may be gone or
    unwanted, so the rerun starts from the champion now; a judged cycle keeps its parent (crash-consistency)."""
    from lmloop.continual.cycle import cycle_parent
    from lmloop.continual.journal import CycleJournal
    from lmloop.data.state import State
    from lmloop.promotion.values import GateDecision

    state = State(tmp_path / "state")
    with _registry(tmp_path, versions=2) as client:
        client.set_registered_model_alias("m", "champion", "2")
        assert cycle_parent("m", "batch-a", state) == ("2", False)
        assert cycle_parent("m", "batch-a", state) == ("2", False), "a rerun: the same parent"
        client.set_registered_model_alias("m", "champion", "1")  # lmloop rollback --to 1
        assert cycle_parent("m", "batch-a", state) == ("1", True) and CycleJournal.of(state, "batch-a").parent == "1"
        judged = decide(("new", _scores(1.0), _scores(0.9, seed=2)), [], margin=0.01, tolerance=0.02)
        verdict = GateDecision(promote=True, reason=judged.reason, batch="batch-b", slices={}, comparison=judged)
        CycleJournal(batch="batch-b").planned(state, "1").judged(state, verdict)
        client.set_registered_model_alias("m", "champion", "2")
        assert cycle_parent("m", "batch-b", state) == ("1", False), "judged: never re-planned"


def test_a_challenger_judged_against_a_champion_that_moved_leaves_its_batch_new(tmp_path) -> None:
    from lmloop.data.state import State
    from lmloop.promotion.moves import promote_if_better
    from lmloop.registry import model_registry

    state = State(tmp_path / "state")
    with _registry(tmp_path, versions=3) as client:
        client.set_registered_model_alias("m", "champion", "2")  # moved from v1 while v3 was judged against it
        kw = {"judged_against": "1", "promote": True, "reason": "better", "numbers": {}, "state": state}
        outcome = promote_if_better("m", "3", **kw)
        assert outcome.champion_moved and not outcome.promoted and "left new" in outcome.reason
        assert model_registry.alias_version("m", "champion") == "2"
        assert promote_if_better("m", "3", **kw).champion_moved, "a rerun after a crash says the same"
        client.set_registered_model_alias("m", "champion", "1")
        assert not promote_if_better("m", "1", **{**kw, "promote": False}).champion_moved
