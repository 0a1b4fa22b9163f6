"""Champion moves on a real MLflow registry: the lock, the re-read, rollback and its records."""

import threading

import pytest

from lmloop.core import settings
from lmloop.data.state import State
from lmloop.promotion.moves import promote_if_better, rollback
from lmloop.registry import model_registry, tracking

STATE = State(settings.home().state)


def history() -> list[dict]:
    return STATE.history()


pytestmark = pytest.mark.slow


def _versions(trained: dict, n: int) -> list[str]:
    """Register ``n`` more versions of the trained model (no alias moves), each from its own copy:
    registering the same folder from the same run again is idempotent and returns the same version."""
    import shutil
    import tempfile
    from pathlib import Path

    model_dir = Path(trained["work_dir"]) / "model"
    copies = [shutil.copytree(model_dir, Path(tempfile.mkdtemp()) / "model") for _ in range(n)]
    return [
        model_registry.register_transformers_model(
            trained["run_id"], copy, "promo-test", tags={}, description="test", input_example="Once upon"
        )
        for copy in copies
    ]


def test_registering_the_same_model_twice_is_idempotent(trained: dict) -> None:
    from pathlib import Path

    model_dir = Path(trained["work_dir"]) / "model"
    first = model_registry.register_transformers_model(
        trained["run_id"], model_dir, "idem-test", tags={"a": 1}, description="d", input_example="Once"
    )
    again = model_registry.register_transformers_model(
        trained["run_id"], model_dir, "idem-test", tags={"a": 1}, description="d", input_example="Once"
    )
    assert first == again
    (version,) = tracking.client().search_model_versions("name='idem-test'")
    assert version.tags["a"] == "1" and version.description == "d" and "lmloop.registration_key" in version.tags


def test_concurrent_challengers_judged_against_one_champion_promote_at_most_once(trained: dict) -> None:
    first, second, third = _versions(trained, 3)
    model_registry.set_alias("promo-test", "champion", first)
    results = {}

    def challenge(version: str) -> None:
        results[version] = promote_if_better(
            "promo-test",
            version,
            judged_against=first,
            promote=True,
            reason="better",
            numbers={"improvement": 0.1},
            state=STATE,
        )

    threads = [threading.Thread(target=challenge, args=(v,)) for v in (second, third)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    promoted = [v for v, r in results.items() if r.promoted]
    assert len(promoted) == 1, results
    loser = ({second, third} - set(promoted)).pop()
    assert "champion moved" in results[loser].reason
    assert model_registry.alias_version("promo-test", "champion") == promoted[0]
    assert model_registry.alias_version("promo-test", "previous_champion") == first
    assert model_registry.alias_version("promo-test", "challenger") == loser
    tags = tracking.client().get_model_version("promo-test", loser).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.champion_version"] == promoted[0]


def test_a_rejected_challenger_never_becomes_champion(trained: dict) -> None:
    (version,) = _versions(trained, 1)
    before = model_registry.alias_version("promo-test", "champion")
    out = promote_if_better(
        "promo-test",
        version,
        judged_against=before,
        promote=False,
        reason="worse on the new slice",
        numbers={},
        state=STATE,
    )
    assert not out.promoted and model_registry.alias_version("promo-test", "champion") == before


def test_rollback_moves_champion_back_and_records_why(trained: dict) -> None:
    champion = model_registry.alias_version("promo-test", "champion")
    previous = model_registry.alias_version("promo-test", "previous_champion")
    out = rollback("promo-test", "regression reported by users", STATE)
    assert out.champion_version == previous and model_registry.alias_version("promo-test", "champion") == previous
    assert model_registry.alias_version("promo-test", "previous_champion") == champion
    assert (
        tracking.client().get_model_version("promo-test", previous).tags["rollback.reason"]
        == "regression reported by users"
    )
    assert history()[-1]["event"] == "rollback" and history()[-1]["reason"] == "regression reported by users"
    with pytest.raises(Exception, match="999"):
        rollback("promo-test", "typo", STATE, to_version="999")
    assert model_registry.alias_version("promo-test", "champion") == previous, "a failed rollback moves nothing"
