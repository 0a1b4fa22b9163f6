"""The training flow: ingest -> validate -> split -> tokenizer -> pack -> pretrain -> evaluate -> register."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lmloop import settings
from lmloop.config import PipelineConfig
from tasks.data import ingest_data, split_data, validate_data
from tasks.evaluate import evaluate_model
from tasks.register import record_trained_data, register_model
from tasks.tokenize import tokenize_and_pack, train_tokenizer
from tasks.tracking import tracked_run
from tasks.train import pretrain_model


@flow(name="training", log_prints=True, persist_result=True, result_serializer="json")  # the summary, as JSON
def training_flow(
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    data: list[str] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train a causal LM from scratch on ``data`` (or ``config.data.sources``) and register it in MLflow.

    Returns the run summary: run id, model name/version/aliases, metrics and the validation result.
    Raises ``DataValidationError`` (and registers nothing) when the data gate rejects the input.
    """
    sources = list(data or config.data.sources)
    if not sources:
        raise ValueError("no data: pass data=[...] or set data.sources in the config")
    with tracked_run(config, run_name, sources) as run_id:
        work = str(settings.work_dir() / run_id)
        ingest_data(sources, config.data, config.validation, work, run_id)
        validation = validate_data(config.data, config.validation, work, run_id)
        data_dir = f"{work}/data"
        split_data(data_dir, config.data, sources, run_id)
        tokenizer = train_tokenizer(data_dir, config.tokenizer, work, run_id)["tokenizer"]
        blocks = tokenize_and_pack(data_dir, tokenizer, config.model.block_size, config.validation, work, run_id)[
            "blocks"
        ]
        trained = pretrain_model(blocks, tokenizer, config.model, config.train, work, run_id)
        metrics = evaluate_model(
            trained["model_dir"], data_dir, blocks, config.eval, config.model.block_size, sources, run_id
        )
        tags = {"manifest_digest": validation["manifest_digest"], "config_hash": config.digest(), "run_id": run_id}
        registered = register_model(run_id, trained["model_dir"], config.registry.model_name, tags, metrics)
        record_trained_data(data_dir, f"base-{run_id[:8]}")
    metrics = {
        **metrics,
        "train_tokens_per_second": trained["tokens_per_second"],
        "train_final_loss": trained["final_loss"],
    }
    return {"run_id": run_id, **registered, "metrics": metrics, "validation": validation, "work_dir": work}
