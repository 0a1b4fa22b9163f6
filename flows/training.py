"""The training flow: ingest -> validate -> split -> tokenizer -> pack -> pretrain -> evaluate -> register."""

from __future__ import annotations

from prefect import flow

from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.core.errors import UserError
from lmloop.core.presets import with_knobs
from lmloop.ops.preflight import check_base, check_data
from lmloop.registry.runs import run_key
from lmloop.registry.values import ModelSummary
from tasks.data import ingest_data, split_data, validate_data
from tasks.evaluate import evaluate_model
from tasks.finetune import fetch_base_model
from tasks.register import record_trained_data, register_model
from tasks.runners import data_workers
from tasks.tokenize import tokenize_and_pack, train_tokenizer
from tasks.tracking import tracked_run
from tasks.train import pretrain_model


def _named() -> str:
    """The flow run's name: the MLflow run's (not a random one)."""
    from prefect.runtime import flow_run

    return flow_run.parameters.get("run_name") or "pretrain"


@flow(
    name="training", flow_run_name=_named, log_prints=True, persist_result=True, result_serializer="json"
)  # the summary, as JSON
def training_flow(
    data: list[str] | None = None,
    preset: str | None = None,
    max_steps: int | None = None,
    run_name: str | None = None,
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen, so a shared default is safe)
) -> ModelSummary:
    """Train a causal LM on ``data`` (or ``config.data.sources``) and register it in MLflow: from scratch, or,
    with ``config.model.base`` (``lmloop run --from``), continuing a pretrained causal LM (a model folder or
    ``hf:org/name``) with its own architecture and tokenizer.

    Returns the run summary: run id, model name/version/aliases, metrics and the validation result.
    Raises ``DataValidationError`` (and registers nothing) when the data gate rejects the input.

    Args:
        data: Files, folders or globs to train on (default: the config's data.sources).
        preset: A preset name (tiny, small, gpt2-124m) that replaces the config below.
        max_steps: Optimizer steps (train.max_steps).
        run_name: The MLflow run's name (default: pretrain).
        config: The full configuration, every section.
    """
    config = with_knobs(config, preset, max_steps, section="train", preset_dirs=settings.preset_dirs())
    sources = list(data or config.data.sources)
    if not sources:
        raise UserError("no data: pass data=[...] (--data) or set data.sources in the config")
    check_data(sources, config.data)  # before the run opens: a mistake leaves no MLflow run behind
    if config.model.base:
        check_base(config.registry.model_name, config.model.base, config.model)
    home = settings.home()
    key = run_key(config.digest(), sorted(sources), run_name)
    with tracked_run(config, run_name or "pretrain", sources, home=home, key=key) as run:
        base = None
        if config.model.base:  # continue a pretrained causal LM: its architecture, tokenizer and weights
            base = fetch_base_model(
                config.registry.model_name, config.model.base, requested=config.model, run=run, task="lm"
            )
        with data_workers():  # one pool of workers for the per-file work of ingest and tokenize
            ingested = ingest_data(sources, data=config.data, validation=config.validation, run=run)
            corpus = validate_data(ingested, data=config.data, validation=config.validation, run=run)
            corpus = split_data(corpus, data=config.data, sources=sources, run=run, log_datasets=False)
            tokenizer = base.tokenizer if base else train_tokenizer(corpus, config.tokenizer, run)
            block = base.block_size if base else config.model.block_size
            blocks = tokenize_and_pack(
                corpus,
                tokenizer,
                block_size=block,
                validation=config.validation,
                run=run,
                batch_size=config.train.batch_size,
                sources=sources,
                data=config.data,
            )
        trained = pretrain_model(
            blocks,
            model_cfg=config.model,
            train_cfg=config.train,
            run=run,
            init_from=base.dir if base else None,
            allow_pickle=bool(base and base.pickle_weights),
        )
        evaluated = evaluate_model(trained, corpus=corpus, blocks=blocks, cfg=config.eval, sources=sources, run=run)
        tags = {"manifest_digest": corpus.manifest_digest, "config_hash": config.digest(), "run_id": run.run_id}
        if base is not None:
            tags |= base.pretrained.lineage() if base.pretrained else {"parent_version": base.version}
        registered = register_model(evaluated, name=config.registry.model_name, tags=tags, run=run)
        record_trained_data(corpus, f"base-{run.run_id[:8]}", run)
    metrics = {
        **evaluated.metrics,
        "train_tokens_per_second": trained.summary["tokens_per_second"],
        "train_final_loss": trained.summary["final_loss"],
    }
    return ModelSummary(
        run_id=run.run_id,
        **registered.model_dump(),
        metrics=metrics,
        validation=corpus.validation,
        work_dir=str(run.work),
    )
