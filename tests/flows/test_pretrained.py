"""Starting from pretrained checkpoints the tests build (no downloads): a classifier on a BERT-style encoder
named by a hub id through a Hugging Face cache in a temporary folder, a LoRA classifier on a GPT-2 folder,
``lmloop run --from`` a Llama folder and a continual cycle on that champion, and the one-line refusal of an
uncached hub id."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmloop.core.config import PipelineConfig
from lmloop.registry import model_registry, tracking
from tests.conftest import MLFLOW_URIS
from tests.pretrained import hub_cache, texts_of, tiny_bert, tiny_gpt2, tiny_llama

pytestmark = pytest.mark.slow
FAST = {"epochs": 3, "batch_size": 16, "tapt_epochs": 1, "max_steps": 20, "warmup_steps": 2, "log_every": 5}
# the tiny checkpoints are random weights: a pretrained model's gentle 5e-5 would teach them nothing in 3 epochs
FAST["pretrained_classifier_learning_rate"] = 2e-3


def _config(base: PipelineConfig, name: str) -> PipelineConfig:
    raw = base.model_dump()
    return PipelineConfig.model_validate(
        {**raw, "finetune": {**raw["finetune"], **FAST}, "registry": {**raw["registry"], "model_name": name}}
    )


def test_a_classifier_on_a_pretrained_encoder_from_the_hub_cache(
    prefect_harness, corpus: Path, tiny_config: PipelineConfig, offline_cache: Path, tmp_path: Path
) -> None:
    from flows.finetune import finetune_flow

    commit = hub_cache(offline_cache, "tiny-org/bert", tiny_bert(tmp_path / "bert", texts_of(corpus)))
    config = _config(tiny_config, "pretrained-enc")
    out = finetune_flow(task="classification", config=config, data=[str(corpus)], base="hf:tiny-org/bert")
    assert out.model_name == "pretrained-enc-classifier"
    metrics = out.metrics
    assert metrics["tapt_steps"] == 0, "no causal-LM adaptation for an encoder"
    assert metrics["accuracy"] > 0.4 and 1 <= metrics["epochs_run"] <= 3, "four balanced topics: chance is 0.25"
    run = tracking.client().get_run(out.run_id)
    assert run.data.tags["lmloop.base.source"] == "hub" and run.data.tags["lmloop.base.id"] == "tiny-org/bert"
    assert run.data.tags["lmloop.base.revision"] == commit and run.data.tags["lmloop.base.license"] == "apache-2.0"
    version = tracking.client().get_model_version(out.model_name, out.model_version)
    assert version.tags["lmloop.base.weights_sha256"] == run.data.tags["lmloop.base.weights_sha256"]
    assert "Started from" in version.description and "tiny-org/bert" in version.description
    saved = json.loads((Path(out.work_dir) / "classifier" / "config.json").read_text())
    assert saved["model_type"] == "bert" and set(saved["id2label"].values()) >= {"astronomy", "cooking"}
    if "champion" in out.aliases:  # crowned only past TF-IDF + LR on the same rows
        assert (
            metrics["accuracy"] >= metrics["baseline_accuracy"] and metrics["macro_f1"] >= metrics["baseline_macro_f1"]
        )


def test_a_lora_classifier_on_a_pretrained_decoder_folder(
    prefect_harness, corpus: Path, tiny_config: PipelineConfig, tmp_path: Path
) -> None:
    from flows.finetune import finetune_flow

    folder = tiny_gpt2(tmp_path / "gpt2", texts_of(corpus))
    config = _config(tiny_config, "pretrained-dec")
    out = finetune_flow(task="classification", config=config, data=[str(corpus)], base=str(folder), lora=True)
    assert out.metrics["tapt_steps"] > 0, "a causal base adapts to the task's text first"
    saved = Path(out.work_dir) / "classifier"
    assert not (saved / "adapter_config.json").exists(), "LoRA merged: the registered model needs no peft"
    assert tracking.client().get_run(out.run_id).data.tags["lmloop.base.source"] == "folder"


def test_lmloop_run_from_a_pretrained_llama_then_a_continual_cycle_on_it(
    prefect_harness, corpus: Path, tiny_config: PipelineConfig, tmp_path: Path
) -> None:
    from flows.continual import continual_flow
    from flows.training import training_flow
    from lmloop.data.sample_data import write_corpus

    folder = tiny_llama(tmp_path / "llama", texts_of(corpus))
    raw = tiny_config.model_dump()
    config = PipelineConfig.model_validate(
        {**raw, "model": {**raw["model"], "base": str(folder)}, "registry": {"model_name": "pretrained-run"}}
    )
    out = training_flow(config=config, data=[str(corpus)], run_name="from-llama")
    tags = tracking.client().get_run(out.run_id).data.tags
    assert tags["lmloop.base.model_type"] == "llama" and tags["lmloop.base.source"] == "folder"
    version = tracking.client().get_model_version("pretrained-run", out.model_version)
    assert "Started from" in version.description and version.tags["lmloop.base.model_type"] == "llama"
    model_dir = Path(out.work_dir) / "model"
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["model_type"] == "llama" and saved["hidden_size"] == 32, "the checkpoint's architecture"
    assert (model_dir / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes(), (
        "no tokenizer trained"
    )
    assert out.metrics["test_bits_per_byte"] > 0 and "champion" in out.aliases

    # the next cycle warm-starts from that champion with the base's architecture and tokenizer; the gate judges it
    landing = tmp_path / "landing"
    write_corpus(landing, seed=0, shift=True, docs=300, files=1)
    cycle = PipelineConfig.model_validate(
        {k: v for k, v in raw.items() if k != "model"}
        | {"registry": {"model_name": "pretrained-run"}, "finetune": {**raw["finetune"], **FAST}}
    )
    summary = continual_flow(config=cycle, incoming=str(landing))
    assert summary.previous_champion == out.model_version and summary.challenger, summary
    assert summary.promoted in (True, False) and summary.reason
    challenger = model_registry.fetch_model("pretrained-run", summary.challenger, tmp_path / "challenger")
    assert json.loads((Path(challenger["model_dir"]) / "config.json").read_text())["model_type"] == "llama"
    tokenizer = Path(challenger["tokenizer_dir"]) / "tokenizer.json"
    assert tokenizer.read_bytes() == (folder / "tokenizer.json").read_bytes()


def test_an_uncached_hub_id_offline_is_one_line_exit_2_and_no_run(corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "LMLOOP_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    for key in MLFLOW_URIS:
        env.pop(key, None)
    command = [sys.executable, "-m", "cli", "finetune", "--task", "classification", "--data", str(corpus)]
    proc = subprocess.run([*command, "--from", "hf:nobody/missing"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "hf:nobody/missing" in lines[0] and "hf download nobody/missing" in lines[0], lines
    assert not list(home.rglob("mlflow.db")) or not tracking_runs(home), "no MLflow run left behind"


def tracking_runs(home: Path) -> list[str]:
    import sqlite3

    db = next(home.rglob("mlflow.db"))
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("select run_uuid from runs")]
