"""Small corpora with the default preset: handled or refused with what is needed, never a traceback."""

import json
from pathlib import Path

import pytest

from lmloop.core.presets import load_config

pytestmark = pytest.mark.slow


def test_sixty_short_rows_get_a_clear_refusal_that_says_what_is_needed(prefect_harness, tmp_path: Path) -> None:
    from flows.training import training_flow
    from lmloop.training.stages import DataTooSmall

    data = tmp_path / "small"
    data.mkdir()
    rows = [{"text": f"short note number {i} about the weather"} for i in range(60)]
    (data / "notes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config("tiny", ["registry.model_name=small-data", "tokenizer.vocab_size=300"])
    with pytest.raises(DataTooSmall) as refused:
        training_flow(config=cfg, data=[str(data)])
    message = str(refused.value)
    assert "tokens" in message and "train.batch_size" in message and "model.block_size" in message
    # found only once the run had opened: it ends KILLED with the reason, never FAILED (before: FAILED)
    from lmloop.registry import tracking

    experiment = tracking.client().get_experiment_by_name(cfg.registry.experiment).experiment_id
    (run,) = tracking.client().search_runs([experiment], filter_string="tags.`lmloop.outcome` = 'refused'")
    assert run.info.status == "KILLED" and run.data.tags["lmloop.refused"] == message
    assert run.data.tags["mlflow.note.content"].startswith("**Refused:**")
    # the same data trains once the shapes fit what there is (validation and test from what there is)
    small = ["model.block_size=16", "train.batch_size=4", "train.max_steps=5", "eval.samples=0"]
    out = training_flow(
        config=load_config("tiny", [*small, "registry.model_name=small-data", "tokenizer.vocab_size=300"]),
        data=[str(data)],
    )
    assert out.model_version == "1" and out.metrics["test_documents"] >= 1
