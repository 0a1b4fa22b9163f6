"""Warm starts: fetch a registered model, continue LM training on it, or train a classifier on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from lmloop.core.config import FinetuneConfig, ModelConfig, TrainConfig
from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.registry import tracking
from lmloop.registry.values import Registered
from lmloop.training import pretrain
from lmloop.training.bases import is_pretrained, resolve
from lmloop.training.classify import train_classifier
from lmloop.training.values import BaseModelRef, Blocks, TrainedModel
from tasks.train import log_training_curves, with_progress


@task(retries=2, retry_delay_seconds=2)
def fetch_base_model(name: str, ref: str, *, requested: ModelConfig, run: Run, task: str = "lm") -> BaseModelRef:
    """The model to start from: a registered version of ``name`` (alias or version, downloaded; its
    architecture is the one to continue with, and a config that contradicts it is refused), or a pretrained
    checkpoint (a model folder, ``hf:org/name[@revision]``) whose source, revision and weights' sha256 become
    the run's lineage tags."""
    if is_pretrained(ref):
        base = resolve(ref, allow_pickle=requested.allow_pickle_weights)
        tracking.set_tags(run.run_id, base.lineage())
        found = pretrain.pretrained_ref(base, requested, task=task)
        if not (Path(base.dir) / "tokenizer.json").exists():  # slow tokenizer files only: save the fast one
            found = found.model_copy(update={"tokenizer_dir": pretrain.fast_tokenizer(base.dir, run.work / "base")})
        return found
    fetched = tracking.fetch_model(name, ref, run.work / "base")
    tracking.set_tags(run.run_id, {"lmloop.parent_model": name, "lmloop.parent_version": fetched["version"]})
    return pretrain.base_model_ref(name, fetched, requested)


@task
def finetune_lm(blocks: Blocks, base: BaseModelRef, *, train_cfg: TrainConfig, lora: bool, run: Run) -> TrainedModel:
    """Continued causal-LM training from the registered base model."""
    log = with_progress(tracking.step_logger(run.run_id), train_cfg.max_steps)
    out = pretrain.train_model(
        blocks,
        model_cfg=base.model,
        train_cfg=train_cfg,
        out=run.work,
        log=log,
        run_id=run.run_id,
        init_from=base.dir,
        lora=lora,
        cache=run.home.cache,
    )
    log_training_curves(run, f"Continued training from {base.label}")
    return out


@task
def finetune_classifier(
    corpus: Corpus, base: BaseModelRef, *, train_cfg: FinetuneConfig, lora: bool, run: Run, test: Corpus | None = None
) -> TrainedModel:
    """A classification head on the base model; accuracy and macro-F1 beside TF-IDF + logistic regression
    on the same test rows (``test``: the team's own)."""
    log = tracking.step_logger(run.run_id, "val_macro_f1")
    out = train_classifier(corpus, base, train_cfg=train_cfg, lora=lora, out=run.work, log=log, test=test)
    tracking.log_metrics(run.run_id, out.metrics)
    tracking.log_artifact(run.run_id, out.path / "metrics.json", "evaluation")
    tracking.log_artifact(run.run_id, out.path / "confusion_matrix.png", "plots")
    log_training_curves(run, f"Classifier fine-tuning from {base.label}")
    return out


@task
def judge_new_classifier(trained: TrainedModel, registered: Registered, run: Run) -> dict[str, Any]:
    """``@champion`` moves to the new classifier only when it beats the current one on the same test rows."""
    from lmloop.promotion.classifier_gate import judge_classifier

    name, version = registered.model_name, registered.model_version
    rows = run.work / "classifier_test_rows.jsonl"
    outcome = judge_classifier(name, version, trained.path, rows, run.work, State(run.home.state))
    tracking.set_tags(
        run.run_id, {"gate.decision": "promoted" if outcome["promoted"] else "kept", "gate.reason": outcome["reason"]}
    )
    return {**outcome, "aliases": tracking.aliases_of(name, version)}
