"""The continual-learning flow: new data -> replay mix -> warm start from @champion -> gate -> promote or not."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from lmloop.continual.cycle import current_champion, cycle_config, one_at_a_time, require_champion
from lmloop.continual.landing import nothing_new as nothing_to_do
from lmloop.continual.values import CycleSummary
from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.core.presets import with_knobs
from lmloop.core.settings import Home
from lmloop.data.gate import DataValidationError
from lmloop.registry.runs import run_key
from tasks.continual import (
    apply_decision,
    close_cycle,
    find_new_files,
    judge_challenger,
    mix_and_pack,
    reject_files,
    start_cycle,
    still_new,
)
from tasks.data import ingest_data, split_data, validate_data
from tasks.evaluate import evaluate_model
from tasks.finetune import fetch_base_model, finetune_lm
from tasks.register import register_model
from tasks.tracking import name_flow_run, stage_run, tag_flow_run, tracked_run


@flow(
    name="continual", flow_run_name="continual", log_prints=True, persist_result=True, result_serializer="json"
)  # the summary, as JSON
def continual_flow(
    incoming: str | None = None,
    preset: str | None = None,
    max_steps: int | None = None,
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen)
) -> CycleSummary:
    """One cycle. With nothing new it returns at once (``promoted`` is None, ``reason`` says why).

    The summary names each version for what it is: ``previous_champion`` (the champion this cycle started
    from and was judged against), ``challenger`` (trained here), ``champion`` (after the decision).

    Args:
        incoming: The landing folder to look in (default: continual.landing, else LMLOOP_HOME/landing).
        preset: A preset name that replaces the config below.
        max_steps: Optimizer steps of the challenger's training (finetune.max_steps).
        config: The full configuration, every section.
    """
    config = with_knobs(config, preset, max_steps, section="finetune", preset_dirs=settings.preset_dirs())
    home = settings.home()
    landing = incoming or config.continual.landing or str(home.landing)
    name = config.registry.model_name
    fresh = find_new_files(landing, home, settle=config.continual.settle_seconds)
    if not fresh:
        name_flow_run("continual-nothing-new")
        summary = nothing_new(landing, name)
        return decided(summary, "nothing-new", summary.reason)
    require_champion(name)
    batch_key = run_key("continual", sorted(f["sha256"] for f in fresh))  # a rerun resumes the same cycle
    with one_at_a_time(batch_key, home):  # another cycle on the same files: this one waits, then finds them consumed
        if not still_new(fresh, home):
            name_flow_run("continual-nothing-new")
            summary = nothing_new(landing, name)
            return decided(summary, "nothing-new", summary.reason)
        return _cycle(config, fresh=fresh, batch_key=batch_key, home=home, name=name)


def _cycle(config: PipelineConfig, *, fresh: list[dict[str, str]], batch_key: str, home: Home, name: str) -> State:
    """The cycle on ``fresh`` (the batch ``batch_key``), from the MLflow run to the decision."""
    sources = [f["staged"] for f in fresh]
    run_name = f"continual-{batch_key[:8]}"
    name_flow_run(run_name)  # the Prefect flow run and the MLflow run share the name
    with tracked_run(config, run_name, sources, home=home, key=batch_key) as run:
        batch = f"batch-{run.run_id[:8]}"
        cfg = cycle_config(config, home.state, batch)
        parent = start_cycle(name, batch, run)
        champion = fetch_base_model(name, parent, requested=config.model, run=run)
        ingested = ingest_data(sources, data=cfg.data, validation=cfg.validation, run=run)
        try:
            corpus = validate_data(ingested, data=cfg.data, validation=cfg.validation, run=run)
        except DataValidationError as exc:  # never read again, never counted against a later batch
            reject_files(fresh, exc.report, batch=batch, run=run)
            raise
        corpus = split_data(corpus, data=cfg.data, sources=sources, run=run)
        mix = mix_and_pack(corpus, champion, replay_ratio=cfg.continual.replay_ratio, seed=cfg.train.seed, run=run)
        with stage_run(run, "train") as child:
            trained = finetune_lm(mix, champion, train_cfg=cfg.finetune, lora=False, run=child)
        with stage_run(run, "evaluate") as child:
            trained = evaluate_model(trained, corpus=corpus, blocks=mix, cfg=cfg.eval, sources=sources, run=child)
        tags = {"manifest_digest": corpus.manifest_digest, "config_hash": cfg.digest(), "run_id": run.run_id}
        tags |= {"parent_version": champion.version, "continual_batch": batch}
        challenger = register_model(trained, name=name, tags=tags, run=run)
        with stage_run(run, "gate") as child:
            verdict = judge_challenger(
                champion, trained, corpus, batch=batch, gate=cfg.continual, limits=cfg.eval, run=child
            )
            outcome = apply_decision(verdict, challenger=challenger, champion=champion, run=child)
        if not outcome.champion_moved:  # else left new: the next cycle judges it against the new champion
            close_cycle(corpus, fresh, batch, run)
    summary = CycleSummary(
        new_files=sources,
        promoted=outcome.promoted,
        reason=outcome.reason,
        previous_champion=champion.version,
        challenger=challenger.model_version,
        champion=outcome.champion_version,
        slices={slice_: _named(numbers) for slice_, numbers in verdict.slices.items()},
        classification=verdict.probe,
        run_id=run.run_id,
        mix={k: mix.counts[k] for k in ("new_documents", "replay_documents")},
    )
    verdict_word = "promoted" if outcome.promoted else "rejected"
    return decided(summary, verdict_word, f"{verdict_word} v{challenger.model_version}: {outcome.reason}")


def decided(summary: CycleSummary, decision: str, message: str) -> State:
    """The flow run's final state: Completed, with the decision as its message and as a tag, so the Prefect
    UI tells a promotion from a rejection without opening the run; its result is ``summary``."""
    tag_flow_run(f"decision:{decision}")
    return Completed(message=message[:1000], data=summary)


def _named(numbers: dict[str, float]) -> dict[str, float]:
    """A slice's figures named for the versions they belong to (the judge calls the parent "champion")."""
    return {
        k.replace("champion_", "previous_champion_", 1) if k.startswith("champion_") else k: v
        for k, v in numbers.items()
    }


def nothing_new(landing: str, name: str) -> CycleSummary:
    """The summary of a cycle with nothing to do; its reason goes to the flow run's log, as a warning (and
    a Prefect artifact) when the landing folder is missing."""
    summary = nothing_to_do(Path(landing), current_champion(name))
    if summary.warning:
        get_run_logger().warning(summary.warning)
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(f"**Warning:** {summary.warning}", key="continual-warning")
    else:
        get_run_logger().info(summary.reason)
    return summary
