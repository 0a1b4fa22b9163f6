"""The fine-tuning flow: a registered model + new data -> continued LM training or a classifier."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.core.errors import UserError
from lmloop.ops.preflight import check_base, check_data
from lmloop.registry.runs import run_key
from lmloop.registry.values import ModelSummary
from tasks.data import ingest_data, prepare_test_set, split_data, validate_data
from tasks.evaluate import evaluate_model
from tasks.finetune import fetch_base_model, finetune_classifier, finetune_lm, judge_new_classifier
from tasks.register import register_model
from tasks.tokenize import tokenize_and_pack
from tasks.tracking import tracked_run


def _named() -> str:
    """The flow run's name: the MLflow run's (not a random one)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    lora = "-lora" if params.get("lora") else ""
    return params.get("run_name") or f"finetune-{params.get('task', 'lm')}{lora}"


@flow(
    name="finetune", flow_run_name=_named, log_prints=True, persist_result=True, result_serializer="json"
)  # the summary, as JSON
def finetune_flow(
    task: Literal["lm", "classification"] = "lm",
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen)
    data: list[str] | None = None,
    base: str = "champion",
    lora: bool = False,
    run_name: str | None = None,
    test_data: list[str] | None = None,
) -> ModelSummary:
    """Fine-tune ``base`` on ``data`` and register the result: ``registry.model_name`` at an alias or
    version, or a pretrained checkpoint (a model folder, ``hf:org/name[@revision]``).

    ``lm`` registers a new version of the same model (tagged with its parent); ``classification``
    registers ``<model_name>-classifier`` with its label map, scored on ``test_data`` (or
    ``eval.test_sources``) when given, else on its own hash split. ``lora`` trains LoRA adapters, merged
    before registering. Architecture, tokenizer and block size come from the base model. A pretrained
    causal LM continues under ``registry.model_name``; a pretrained encoder serves classification only.
    """
    sources = list(data or config.data.sources)
    if not sources:
        raise UserError("no data: pass data=[...] (--data) or set data.sources in the config")
    check_data(sources, config.data, labels=task == "classification")  # before the run opens: no run left behind
    check_base(config.registry.model_name, base, config.model)
    held_out = list(test_data or config.eval.test_sources)
    if held_out:
        check_data(held_out, config.data)
    name = run_name or f"finetune-{task}{'-lora' if lora else ''}"
    home = settings.home()
    with tracked_run(config, name, sources, home=home, key=run_key(config.digest(), sorted(sources), name)) as run:
        parent = fetch_base_model(config.registry.model_name, base, requested=config.model, run=run, task=task)
        ingested = ingest_data(sources, data=config.data, validation=config.validation, run=run)
        corpus = validate_data(ingested, data=config.data, validation=config.validation, run=run)
        corpus = split_data(corpus, data=config.data, sources=sources, run=run, log_datasets=task != "lm")
        tags = {"manifest_digest": corpus.manifest_digest, "config_hash": config.digest(), "run_id": run.run_id}
        tags |= {"parent_version": parent.version, "finetune_task": task, "lora": str(lora).lower()}
        if parent.pretrained:  # the registered version says what it started from
            tags |= parent.pretrained.lineage()
        if task == "lm":
            blocks = tokenize_and_pack(
                corpus,
                parent.tokenizer,
                block_size=parent.block_size,
                validation=config.validation,
                run=run,
                batch_size=config.finetune.batch_size,
                sources=sources,
                data=config.data,
            )
            trained = finetune_lm(blocks, parent, train_cfg=config.finetune, lora=lora, run=run)
            trained = evaluate_model(trained, corpus=corpus, blocks=blocks, cfg=config.eval, sources=sources, run=run)
            registered = register_model(trained, name=config.registry.model_name, tags=tags, run=run)
        else:
            test = (
                prepare_test_set(held_out, data=config.data, validation=config.validation, run=run)
                if held_out
                else None
            )
            trained = finetune_classifier(corpus, parent, train_cfg=config.finetune, lora=lora, run=run, test=test)
            tags["labels"] = ",".join(trained.labels)
            classifier = f"{config.registry.model_name}-classifier"
            registered = register_model(trained, name=classifier, tags=tags, run=run, task="text-classification")
            registered = judge_new_classifier(trained, registered, run=run)
    return ModelSummary(
        run_id=run.run_id,
        **registered.model_dump(),
        metrics=trained.metrics,
        validation=corpus.validation,
        work_dir=str(run.work),
    )
