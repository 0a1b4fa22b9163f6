"""The continual-learning cycle on the shared champion: nothing new, one shifted batch, its records."""

import json
from pathlib import Path

import pytest

from lmloop import tracking
from lmloop.config import PipelineConfig
from lmloop.continual import frozen_slices
from lmloop.promotion import history
from lmloop.sample_data import write_corpus
from lmloop.settings import state_dir

pytestmark = pytest.mark.slow


def _config(base: PipelineConfig) -> PipelineConfig:
    raw = base.model_dump()
    raw["finetune"] |= {"max_steps": 40, "warmup_steps": 4, "log_every": 10, "checkpoint_every": 40, "batch_size": 8}
    raw["continual"] = {"replay_ratio": 0.5, "tolerance": 0.05, "bootstrap_samples": 200}
    return PipelineConfig.model_validate(raw)


def test_nothing_new_exits_quickly_without_a_run(trained: dict, tmp_path: Path, tiny_config: PipelineConfig) -> None:
    from flows.continual import continual_flow

    out = continual_flow(config=_config(tiny_config), incoming=str(tmp_path / "empty"))
    assert out["new_files"] == [] and out["promoted"] is None and "nothing new" in out["reason"]
    assert out["champion_version"] == tracking.alias_version(tiny_config.registry.model_name, "champion")


def test_a_shifted_batch_runs_a_full_cycle_and_records_its_decision(
    trained: dict, tmp_path: Path, tiny_config: PipelineConfig
) -> None:
    from flows.continual import continual_flow

    name = tiny_config.registry.model_name
    landing = tmp_path / "landing"
    write_corpus(landing, seed=7, shift=True, docs=300, files=1)
    champion_before = tracking.alias_version(name, "champion")
    assert any(n.startswith("base-") for n in frozen_slices()), "the first training froze its test split"

    out = continual_flow(config=_config(tiny_config), incoming=str(landing))
    assert out["new_files"] and out["promoted"] in (True, False) and out["reason"]
    assert out["mix"]["replay_documents"] > 0 and out["mix"]["new_documents"] > 0
    batch = f"batch-{out['run_id'][:8]}"
    assert batch in out["slices"] and any(s.startswith("base-") for s in out["slices"])
    champion_after = tracking.alias_version(name, "champion")
    assert champion_after == (out["challenger_version"] if out["promoted"] else champion_before)
    tags = tracking.client().get_model_version(name, out["challenger_version"]).tags
    assert tags["gate.decision"] == ("promoted" if out["promoted"] else "rejected")
    assert tags["parent_version"] == champion_before
    assert history()[-1]["challenger"] == out["challenger_version"]
    report = tracking.client().download_artifacts(out["run_id"], "gate/report.md")
    assert "95% CI" in Path(report).read_text()
    assert batch in frozen_slices(), "the batch's held-out split is frozen for later cycles"
    assert len(json.loads((state_dir() / "watermark.json").read_text())) == 1

    again = continual_flow(config=_config(tiny_config), incoming=str(landing))
    assert again["promoted"] is None and again["new_files"] == []
