"""The fine-tuning flow: a registered model + new data -> continued LM training or a classifier."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from lmloop import settings
from lmloop.config import PipelineConfig
from tasks.data import ingest_data, split_data, validate_data
from tasks.evaluate import evaluate_model
from tasks.finetune import fetch_base_model, finetune_classifier, finetune_lm
from tasks.register import register_model
from tasks.tokenize import tokenize_and_pack
from tasks.tracking import tracked_run


@flow(name="finetune", log_prints=True, persist_result=True, result_serializer="json")  # the summary, as JSON
def finetune_flow(
    task: Literal["lm", "classification"] = "lm",
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen)
    data: list[str] | None = None,
    base: str = "champion",
    lora: bool = False,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``registry.model_name`` at ``base`` (alias or version) on ``data``; register the result.

    ``lm`` registers a new version of the same model (tagged with its parent); ``classification``
    registers ``<model_name>-classifier`` with its label map. ``lora`` trains LoRA adapters, merged
    before registering.
    """
    sources = list(data or config.data.sources)
    if not sources:
        raise ValueError("no data: pass data=[...] or set data.sources in the config")
    name = run_name or f"finetune-{task}{'-lora' if lora else ''}"
    with tracked_run(config, name, sources) as run_id:
        work = str(settings.work_dir() / run_id)
        data_dir = f"{work}/data"
        parent = fetch_base_model(config.registry.model_name, base, work, run_id)
        ingest_data(sources, config.data, config.validation, work, run_id)
        validation = validate_data(config.data, config.validation, work, run_id)
        split_data(data_dir, config.data, sources, run_id)
        tags = {"manifest_digest": validation["manifest_digest"], "config_hash": config.digest(), "run_id": run_id}
        tags |= {"parent_version": parent["version"], "finetune_task": task, "lora": str(lora).lower()}
        if task == "lm":
            block = config.model.block_size
            blocks = tokenize_and_pack(data_dir, parent["tokenizer_dir"], block, config.validation, work, run_id)[
                "blocks"
            ]
            trained = finetune_lm(blocks, parent, config.model, config.finetune, lora, work, run_id)
            metrics = evaluate_model(trained["model_dir"], data_dir, blocks, config.eval, block, sources, run_id)
            registered = register_model(run_id, trained["model_dir"], config.registry.model_name, tags, metrics)
        else:
            trained = finetune_classifier(
                data_dir, parent, config.finetune, config.model.block_size, lora, work, run_id
            )
            metrics = trained["metrics"]
            tags["labels"] = ",".join(trained["labels"])
            classifier = f"{config.registry.model_name}-classifier"
            registered = register_model(run_id, trained["model_dir"], classifier, tags, metrics, "text-classification")
    return {"run_id": run_id, **registered, "metrics": metrics, "validation": validation, "work_dir": work}
