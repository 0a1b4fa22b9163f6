"""The continual-learning flow: new data -> replay mix -> warm start from @champion -> gate -> promote or not."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lmloop import settings, tracking
from lmloop.config import PipelineConfig
from tasks.continual import apply_decision, close_cycle, find_new_files, judge_challenger, mix_and_pack
from tasks.data import ingest_data, split_data, validate_data
from tasks.evaluate import evaluate_model
from tasks.finetune import fetch_base_model, finetune_lm
from tasks.register import record_trained_data, register_model
from tasks.tracking import tracked_run


def _cycle_config(config: PipelineConfig) -> PipelineConfig:
    """New data is deduplicated against everything trained on and stripped of frozen-slice documents."""
    from lmloop.continual import frozen_slices

    data = config.data.model_copy(
        update={"dedup_against_trained": True, "frozen_eval": [str(p) for p in frozen_slices().values()]}
    )
    return config.model_copy(update={"data": data})


@flow(name="continual", log_prints=True, persist_result=True, result_serializer="json")  # the summary, as JSON
def continual_flow(
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen)
    incoming: str | None = None,
) -> dict[str, Any]:
    """One cycle. With nothing new it returns at once (``promoted`` is None)."""
    landing = incoming or config.continual.landing or str(settings.landing_dir())
    name = config.registry.model_name
    fresh = find_new_files(landing)
    if not fresh:
        champion = tracking.alias_version(name, "champion")
        return {
            "new_files": [],
            "promoted": None,
            "reason": f"nothing new in {landing}",
            "champion_version": champion,
            "challenger_version": None,
            "slices": {},
        }
    cfg = _cycle_config(config)
    sources = [f["uri"] for f in fresh]
    with tracked_run(cfg, "continual", sources) as run_id:
        work, batch = str(settings.work_dir() / run_id), f"batch-{run_id[:8]}"
        data_dir = f"{work}/data"
        champion = fetch_base_model(name, "champion", work, run_id)
        ingest_data(sources, cfg.data, cfg.validation, work, run_id)
        validation = validate_data(cfg.data, cfg.validation, work, run_id)
        split_data(data_dir, cfg.data, sources, run_id)
        block = cfg.model.block_size
        mix = mix_and_pack(
            data_dir, champion["tokenizer_dir"], block, cfg.continual.replay_ratio, cfg.train.seed, work, run_id
        )
        trained = finetune_lm(mix["blocks"], champion, cfg.model, cfg.finetune, False, work, run_id)
        metrics = evaluate_model(trained["model_dir"], data_dir, mix["blocks"], cfg.eval, block, sources, run_id)
        tags = {"manifest_digest": validation["manifest_digest"], "config_hash": cfg.digest(), "run_id": run_id}
        tags |= {"parent_version": champion["version"], "continual_batch": batch}
        challenger = register_model(run_id, trained["model_dir"], name, tags, metrics)["model_version"]
        verdict = judge_challenger(champion["model_dir"], trained["model_dir"], data_dir, batch, cfg.continual)
        outcome = apply_decision(name, challenger, champion["version"], verdict, work, run_id)
        record_trained_data(data_dir, batch)
        close_cycle(fresh, run_id)
    return {
        "new_files": sources,
        "promoted": outcome["promoted"],
        "reason": outcome["reason"],
        "champion_version": outcome["champion_version"],
        "challenger_version": challenger,
        "slices": verdict["slices"],
        "classification": verdict["probe"],
        "run_id": run_id,
        "mix": {k: mix[k] for k in ("new_documents", "replay_documents")},
    }
