"""Fine-tuning from the registered champion: a classifier (full and LoRA) and continued LM training."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lmloop.core.config import PipelineConfig
from lmloop.registry import model_registry, tracking

pytestmark = pytest.mark.slow
STEPS = {
    "finetune": {
        "max_steps": 30,
        "warmup_steps": 3,
        "log_every": 10,
        "checkpoint_every": 30,
        "batch_size": 8,
        "epochs": 2,
        "tapt_epochs": 1,
    }
}


SHARED: dict[str, dict] = {}


def _config(base: PipelineConfig) -> PipelineConfig:
    return PipelineConfig.model_validate({**base.model_dump(), **STEPS})


def test_classification_head_beats_chance_and_registers_with_its_label_map(
    trained: dict, corpus: Path, tiny_config: PipelineConfig
) -> None:
    from flows.finetune import finetune_flow

    out = finetune_flow(task="classification", config=_config(tiny_config), data=[str(corpus)])
    SHARED["classifier"] = out  # the gate test below judges a worse one against it
    metrics = out.metrics
    assert out.model_name == f"{tiny_config.registry.model_name}-classifier"
    assert {"accuracy", "macro_f1", "baseline_accuracy", "baseline_macro_f1"} <= set(metrics)
    assert metrics["accuracy"] > 0.4, "four balanced topics: chance is 0.25"
    assert metrics["baseline_accuracy"] > 0.9, "topics have their own vocabularies: TF-IDF separates them"
    model_dir = Path(out.work_dir) / "classifier"
    report = json.loads((model_dir / "metrics.json").read_text())["report"]
    assert {"astronomy", "cooking", "music", "sailing", "macro avg"} <= set(report)
    assert (model_dir / "confusion_matrix.png").stat().st_size > 1000
    logged = {Path(a.path).name for a in tracking.client().list_artifacts(out.run_id, "plots")}
    assert logged >= {"confusion_matrix.png", "training_curves.png"}
    version = tracking.client().get_model_version(out.model_name, out.model_version)
    assert (
        version.tags["parent_version"] == trained["model_version"] and version.tags["finetune_task"] == "classification"
    )
    # 30 steps of a tiny model lose to TF-IDF on topics with their own vocabularies (before: asserted only when
    # it happened to lose; the winning path is the gate test below)
    assert metrics["accuracy"] < metrics["baseline_accuracy"]
    assert "baseline" in out.not_promoted and out.aliases == [], "a loser is never crowned"
    assert version.tags["gate.decision"] == "rejected" and "Not a champion" in version.description
    assert model_registry.alias_version(out.model_name, "champion") is None
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 2
    assert metrics["accuracy_difference_ci95_low"] <= metrics["accuracy"] - metrics["baseline_accuracy"]
    assert metrics["accuracy"] - metrics["baseline_accuracy"] <= metrics["accuracy_difference_ci95_high"]
    pipe = mlflow.transformers.load_model(f"models:/{out.model_name}/{out.model_version}")
    assert pipe("Tire stezoubi goupai")[0]["label"] in {"astronomy", "cooking", "music", "sailing"}


def test_lora_lm_finetune_registers_a_merged_model_that_loads_and_generates(
    trained: dict, corpus: Path, tiny_config: PipelineConfig
) -> None:
    from flows.finetune import finetune_flow

    out = finetune_flow(task="lm", config=_config(tiny_config), data=[str(corpus)], lora=True)
    assert out.model_name == tiny_config.registry.model_name and int(out.model_version) > 1
    assert "champion" not in out.aliases, "fine-tuning never moves the champion by itself"
    version = tracking.client().get_model_version(out.model_name, out.model_version)
    assert version.tags["parent_version"] == trained["model_version"] and version.tags["lora"] == "true"
    assert out.metrics["test_perplexity"] < out.metrics["unigram_perplexity"]
    pipe = mlflow.transformers.load_model(f"models:/{out.model_name}/{out.model_version}")
    assert len(pipe("Tire stezoubi", max_new_tokens=5, do_sample=False)[0]["generated_text"]) > len("Tire stezoubi")
    weights = Path(out.work_dir) / "model" / "model.safetensors"
    assert weights.exists() and not (Path(out.work_dir) / "model" / "adapter_config.json").exists()


def test_evaluation_reports_slices_true_entropy_and_references(trained: dict) -> None:
    metrics = json.loads((Path(trained["work_dir"]) / "model" / "metrics.json").read_text())
    assert set(metrics["slices"]["label"]) == {"astronomy", "cooking", "music", "sailing"}
    assert len(metrics["slices"]["source"]) == 3
    assert 0 < metrics["true_bits_per_byte"] < metrics["model_bits_per_byte_on_generated"]
    assert metrics["reference_pairs"] == 40 and metrics["chrf"] >= 0
    logged = tracking.client().get_run(trained["run_id"]).data.metrics
    assert "slice/label/cooking/perplexity" in logged


def test_a_warm_start_takes_the_champions_architecture_and_refuses_a_contradiction(
    trained: dict, corpus: Path, tiny_config: PipelineConfig
) -> None:
    """Regression: a warm start used to pack ``cfg.model.block_size`` blocks whatever the champion's
    positions were. Without a model section the champion's architecture is used; a contradiction is refused."""
    from flows.finetune import finetune_flow
    from lmloop.core.config import ConfigError
    from lmloop.core.presets import load_config
    from lmloop.training.pretrain import model_config_of

    sets = [f"{k}={v}" for k, v in {**STEPS["finetune"], "max_steps": 10}.items()]
    unset = load_config(None, [f"finetune.{s}" for s in sets])
    assert unset.model.block_size != tiny_config.model.block_size, "the defaults differ from the champion"
    out = finetune_flow(task="lm", config=unset, data=[str(corpus)], run_name="warm-start-architecture")
    trained_cfg = model_config_of(Path(out.work_dir) / "model")
    assert trained_cfg.block_size == tiny_config.model.block_size and trained_cfg.n_layer == tiny_config.model.n_layer
    from datasets import load_from_disk

    blocks = load_from_disk(str(Path(out.work_dir) / "blocks" / "train"))
    assert len(blocks[0]["input_ids"]) == tiny_config.model.block_size, "packed at the champion's block size"
    contradicting = load_config(None, [f"finetune.{s}" for s in sets] + ["model.block_size=32"])
    with pytest.raises(
        ConfigError, match=rf"model\.block_size=32 contradicts .* block_size={tiny_config.model.block_size}"
    ):
        finetune_flow(task="lm", config=contradicting, data=[str(corpus)], run_name="warm-start-contradiction")
    experiment = tracking.client().get_experiment_by_name(contradicting.registry.experiment).experiment_id
    opened = tracking.client().search_runs(
        [experiment], filter_string="attributes.run_name = 'warm-start-contradiction'"
    )
    assert opened == [], "checked before the run opens: no run left behind"


def test_the_classifier_gate_keeps_a_worse_one_and_promotes_a_better_one(
    trained: dict, corpus: Path, tiny_config: PipelineConfig, tmp_path: Path
) -> None:
    """A team crowned a classifier by hand; a worse one, judged on the same test rows (paired bootstrap),
    leaves ``@champion`` where it is, and the decision is recorded. The other way round, a better one that
    also clears its baseline is promoted through the same gate; below its baseline it never is."""
    from flows.finetune import finetune_flow
    from lmloop.core import settings
    from lmloop.data.state import State
    from lmloop.promotion.classifier_gate import against_champion, judge_classifier

    cfg = _config(tiny_config)
    good = SHARED.get("classifier") or finetune_flow(task="classification", config=cfg, data=[str(corpus)])
    name = good.model_name
    model_registry.set_alias(name, "champion", good.model_version)
    weak = cfg.model_copy(
        update={"finetune": cfg.finetune.model_copy(update={"epochs": 1, "classifier_learning_rate": 1e-7})}
    )
    bad = finetune_flow(task="classification", config=weak, data=[str(corpus)], run_name="classifier-bad")
    assert bad.metrics["accuracy"] < good.metrics["accuracy"]
    work = Path(good.work_dir)
    outcome = against_champion(
        name,
        bad.model_version,
        good.model_version,
        model_dir=Path(bad.work_dir) / "classifier",
        test_rows=work / "classifier_test_rows.jsonl",
        work=tmp_path,
        state=State(settings.home().state),
    )
    assert outcome.promoted is False and "not better" in outcome.reason and "95% CI" in outcome.reason
    assert model_registry.alias_version(name, "champion") == good.model_version
    tags = tracking.client().get_model_version(name, bad.model_version).tags
    assert float(tags["gate.accuracy_difference_ci95_high"]) < 0

    # the better classifier against the worse one as champion: the whole rule, the real models on the same rows
    model_registry.set_alias(name, "champion", bad.model_version)
    judged = {
        "model_dir": Path(good.work_dir) / "classifier",
        "test_rows": work / "classifier_test_rows.jsonl",
        "work": tmp_path,
        "state": State(settings.home().state),
    }
    below = judge_classifier(name, good.model_version, metrics=good.metrics, **judged)  # the tiny one loses to TF-IDF
    assert not below.promoted and below.reason.startswith(("below the TF-IDF", "statistically tied with the TF-IDF"))
    assert model_registry.alias_version(name, "champion") == bad.model_version, "below its baseline: never crowned"
    cleared = {  # as a classifier that beats its baseline would report it
        **good.metrics,
        "accuracy": good.metrics["baseline_accuracy"] + 0.01,
        "macro_f1": good.metrics["baseline_macro_f1"] + 0.01,
    }
    won = judge_classifier(name, good.model_version, metrics=cleared, **judged)
    assert won.promoted and f"v{good.model_version} better than champion v{bad.model_version}" in won.reason
    assert model_registry.alias_version(name, "champion") == good.model_version
    assert model_registry.alias_version(name, "previous_champion") == bad.model_version


def _man_page_rows() -> list[dict[str, str]]:
    """The benchmark's real labelled set (manual pages' NAME lines by section), built the same way."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "man_pages.py"
    spec = importlib.util.spec_from_file_location("man_pages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(), module.split_of


def test_a_classifier_learns_real_text_and_is_scored_on_the_teams_test_file(
    trained: dict, tiny_config: PipelineConfig, tmp_path: Path
) -> None:
    """Smoke on real text nobody here wrote (the installed manual pages, as in benchmarks/classify_real.py):
    task-adaptive pretraining, the auxiliary LM loss, epochs with early stopping and a team's own test file,
    on the session's tiny champion. It must learn more than the majority class."""
    from collections import Counter

    from flows.finetune import finetune_flow

    rows, split_of = _man_page_rows()
    if len(rows) < 2000:
        pytest.skip("needs the installed manual pages (/usr/share/man)")
    per_class = Counter()
    sample = []
    for row in rows[::3]:  # at most 100 descriptions per section: 6 classes, not 78% one of them
        if per_class[row["label"]] < 100:
            per_class[row["label"]] += 1
            sample.append(row)
    train, test = tmp_path / "labelled.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in sample if split_of(r["text"]) != "test"))
    held = [r for r in sample if split_of(r["text"]) == "test"]
    test.write_text("".join(json.dumps(r) + "\n" for r in held))
    cfg = _config(tiny_config)
    cfg = cfg.model_copy(
        update={
            "finetune": cfg.finetune.model_copy(update={"epochs": 5, "patience": 5, "classifier_learning_rate": 2e-3})
        }
    )
    out = finetune_flow(
        task="classification", config=cfg, data=[str(train)], test_data=[str(test)], run_name="classifier-real-text"
    )
    metrics = out.metrics
    majority = max(Counter(r["label"] for r in held).values()) / len(held)
    assert metrics["test_documents"] == len(held), "scored on exactly the team's rows"
    assert metrics["tapt_steps"] > 0 and metrics["best_epoch"] <= metrics["epochs_run"] <= 5
    assert metrics["accuracy"] > majority + 0.1, (metrics, majority)
    assert metrics["baseline_accuracy"] > majority + 0.1 and metrics["baseline_c"] in (1.0, 4.0, 16.0, 64.0)
    from lmloop.promotion.classifier_gate import predict_labels

    model_dir = str(Path(out.work_dir) / "classifier")
    scored = [json.loads(line) for line in (Path(out.work_dir) / "classifier_test_rows.jsonl").open()]
    served = predict_labels(model_dir, model_dir, [r["text"] for r in scored])
    assert np.mean(served == np.array([r["label"] for r in scored])) == pytest.approx(metrics["accuracy"]), (
        "the reported accuracy is what the registered model scores when it is served (the gate's prediction)"
    )
    tapt = tracking.client().get_metric_history(out.run_id, "tapt_loss")
    assert len(tapt) == 1 and tapt[0].value > 0, "one TAPT epoch, its LM loss logged"
    lm = tracking.client().get_metric_history(out.run_id, "train_lm_loss")
    assert min(m.step for m in lm) > tapt[0].step, "the classifier's curves continue after TAPT's steps"
