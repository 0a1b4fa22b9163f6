"""Warm starts: fetch a registered model, continue LM training on it, or train a classifier on it."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from lmloop.core.config import FinetuneConfig, ModelConfig, TrainConfig
from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.registry import model_registry
from lmloop.registry.values import Registered
from lmloop.training import pretrain
from lmloop.training.bases import is_pretrained, resolve
from lmloop.training.classify import train_classifier
from lmloop.training.report import report_classifier, report_curves, with_progress
from lmloop.training.values import BaseModelRef, Blocks, TrainedModel
from tasks.tracking import reporter


@task(retries=2, retry_delay_seconds=2)
def fetch_base_model(name: str, ref: str, *, requested: ModelConfig, run: Run, task: str = "lm") -> BaseModelRef:
    """The model to start from: a registered version of ``name`` (alias or version, downloaded; its
    architecture is the one to continue with, and a config that contradicts it is refused), or a pretrained
    checkpoint (a model folder, ``hf:org/name[@revision]``) whose source, revision and weights' sha256 become
    the run's lineage tags."""
    if is_pretrained(ref):
        base = resolve(ref, allow_pickle=requested.allow_pickle_weights)
        reporter(run).tags(base.lineage())
        found = pretrain.pretrained_ref(base, requested, task=task)
        if not (Path(base.dir) / "tokenizer.json").exists():  # slow tokenizer files only: save the fast one
            found = found.model_copy(update={"tokenizer_dir": pretrain.fast_tokenizer(base.dir, run.work / "base")})
        return found
    fetched = model_registry.fetch_model(name, ref, run.work / "base")
    reporter(run).tags({"lmloop.parent_model": name, "lmloop.parent_version": fetched["version"]})
    return pretrain.base_model_ref(name, fetched, requested)


@task
def finetune_lm(blocks: Blocks, base: BaseModelRef, *, train_cfg: TrainConfig, lora: bool, run: Run) -> TrainedModel:
    """Continued causal-LM training from the registered base model."""
    report = reporter(run)
    out = pretrain.train_model(
        blocks,
        model_cfg=base.model,
        train_cfg=train_cfg,
        out=run.work,
        log=with_progress(report, train_cfg.max_steps),
        run_id=run.run_id,
        init_from=base.dir,
        allow_pickle=base.pickle_weights,
        lora=lora,
        cache=run.home.cache,
    )
    report_curves(report, run.work, f"Continued training from {base.label}")
    return out


@task
def finetune_classifier(
    corpus: Corpus, base: BaseModelRef, *, train_cfg: FinetuneConfig, lora: bool, run: Run, test: Corpus | None = None
) -> TrainedModel:
    """A classification head on the base model; accuracy and macro-F1 beside TF-IDF + logistic regression
    on the same test rows (``test``: the team's own)."""
    report = reporter(run)
    log = report.step_logger("val_macro_f1")
    out = train_classifier(corpus, base, train_cfg=train_cfg, lora=lora, out=run.work, log=log, test=test)
    report_classifier(report, out, work=run.work, title=f"Classifier fine-tuning from {base.label}")
    return out


@task
def judge_new_classifier(trained: TrainedModel, registered: Registered, run: Run) -> Registered:
    """The classifier's gate (:func:`lmloop.promotion.classifier_gate.judge_classifier`): never crowned below
    its baseline, else ``@champion`` when it is the first or beats the current one on the same test rows.
    Returns ``registered`` with the aliases it holds now, and why it is not champion when it is not."""
    from lmloop.promotion.classifier_gate import judge_classifier
    from lmloop.promotion.report import report_classifier_verdict

    name, version = registered.model_name, registered.model_version
    outcome = judge_classifier(
        name,
        version,
        metrics=trained.metrics,
        model_dir=trained.path,
        test_rows=run.work / "classifier_test_rows.jsonl",
        work=run.work,
        state=State(run.home.state),
    )
    report_classifier_verdict(reporter(run), outcome, name=name, version=version)
    aliases = model_registry.aliases_of(name, version)
    return registered.model_copy(
        update={"aliases": aliases, "not_promoted": None if "champion" in aliases else outcome.reason}
    )
