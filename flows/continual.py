"""The continual-learning flow: new data -> replay mix -> warm start from @champion -> gate -> promote or not."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from lmloop.continual.assess import Assessment
from lmloop.continual.cycle import current_champion, cycle_config, one_at_a_time, require_champion
from lmloop.continual.landing import nothing_new as nothing_to_do
from lmloop.continual.values import CycleSummary
from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.core.presets import with_knobs
from lmloop.core.settings import Home
from lmloop.core.values import Run
from lmloop.data.gate import DataValidationError
from lmloop.data.values import Corpus
from lmloop.promotion.values import GateDecision, PromotionOutcome
from lmloop.registry.runs import run_key
from tasks.continual import (
    announce,
    apply_decision,
    ask_for_approval,
    assess_batch,
    close_cycle,
    defer_batch,
    find_new_files,
    judge_challenger,
    mix_and_pack,
    record_on_timeline,
    reject_files,
    report_policy,
    resume_approval,
    start_cycle,
    started_before,
    still_new,
    waiting_files,
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
    force: bool = False,
    config: PipelineConfig = PipelineConfig(),  # noqa: B008  (frozen)
) -> CycleSummary:
    """One cycle. With nothing new it returns at once (``promoted`` is None, ``reason`` says why). New files
    are first measured against ``@champion`` (drift, size, its age): unless the retraining policy
    (``continual.policy``) says retrain, they are deferred and the cycle ends in seconds.

    The summary names each version for what it is: ``previous_champion`` (the champion this cycle started
    from and was judged against), ``challenger`` (trained here), ``champion`` (after the decision).

    Args:
        incoming: The landing folder to look in (default: continual.landing, else LMLOOP_HOME/landing).
        preset: A preset name that replaces the config below.
        max_steps: Optimizer steps of the challenger's training (finetune.max_steps).
        force: Retrain whatever the retraining policy says.
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
    champion = require_champion(name)
    deferred = waiting_files(home)
    files = [*deferred, *fresh]
    batch_key = run_key("continual", sorted(f["sha256"] for f in files))  # a rerun resumes the same cycle
    with one_at_a_time(batch_key, home):  # another cycle on the same files: this one waits, then finds them consumed
        if not still_new(files, home):
            name_flow_run("continual-nothing-new")
            summary = nothing_new(landing, name)
            return decided(summary, "nothing-new", summary.reason)
        force = force or started_before(batch_key, home)
        assessment = assess_batch(fresh, deferred, name=name, champion=champion, config=config, home=home, force=force)
        if not assessment.retrain:
            return _deferred(fresh, assessment, name=name, config=config, home=home)
        if assessment.drifted:
            announce(
                "lmloop.drift.detected",
                name,
                version=champion,
                payload={**assessment.numbers(), "reasons": assessment.reasons},
            )
        return _cycle(config, files=files, batch_key=batch_key, home=home, assessment=assessment)


def _deferred(
    fresh: list[dict[str, str]], assessment: Assessment, *, name: str, config: PipelineConfig, home: Home
) -> State:
    name_flow_run("continual-deferred")
    batch = defer_batch(fresh, assessment, name=name, config=config, home=home)
    reason = f"{'; '.join(assessment.reasons)} ({assessment.summary()})"
    summary = CycleSummary(
        new_files=[f["uri"] for f in fresh],
        promoted=None,
        reason=reason,
        previous_champion=assessment.champion_version,
        challenger=None,
        champion=assessment.champion_version,
        decision="deferred",
        batch=batch,
        assessment=assessment.numbers(),
        retrain_reasons=assessment.reasons,
    )
    return decided(summary, "deferred", f"deferred: {reason}")


def _cycle(
    config: PipelineConfig, *, files: list[dict[str, str]], batch_key: str, home: Home, assessment: Assessment
) -> State:
    """The cycle on ``files`` (the batch ``batch_key``), from the MLflow run to the decision."""
    name = config.registry.model_name
    sources = [f["staged"] for f in files]
    run_name = f"continual-{batch_key[:8]}"
    name_flow_run(run_name)  # the Prefect flow run and the MLflow run share the name
    with tracked_run(config, run_name, sources, home=home, key=batch_key) as run:
        batch = f"batch-{run.run_id[:8]}"
        cfg = cycle_config(config, home.state, batch)
        report_policy(assessment, batch=batch, run=run)
        if (asked := resume_approval(batch, run)) is not None:  # stopped while it waited: nothing is trained again
            verdict, request = asked
            with stage_run(run, "gate") as child:
                verdict = ask_for_approval(
                    verdict,
                    challenger=request.challenger,
                    champion=request.champion,
                    corpus=request.corpus,
                    files=request.files,
                    hours=cfg.continual.approval_hours,
                    name=name,
                    run=child,
                )
                outcome = apply_decision(
                    verdict, name=name, challenger=request.challenger, champion=request.champion, run=child
                )
            if not outcome.champion_moved:
                close_cycle(Corpus(root=request.corpus), request.files, batch, run)
            versions = (request.champion, request.challenger)
            return _judged(verdict, outcome, versions=versions, files=files, assessment=assessment, config=cfg, run=run)
        parent = start_cycle(name, batch, run)
        champion = fetch_base_model(name, parent, requested=config.model, run=run)
        ingested = ingest_data(sources, data=cfg.data, validation=cfg.validation, run=run)
        try:
            corpus = validate_data(ingested, data=cfg.data, validation=cfg.validation, run=run)
        except DataValidationError as exc:  # never read again, never counted against a later batch
            reject_files(files, exc.report, batch=batch, run=run)
            record_on_timeline(
                assessment, "data-rejected", name=name, champion=parent, batch=batch, config=cfg, home=home
            )
            announce("lmloop.data.rejected", name, payload={"batch": batch, "reason": (exc.details or str(exc))[:2000]})
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
            if verdict.promote and cfg.continual.approval == "required":  # a person decides
                verdict = ask_for_approval(
                    verdict,
                    challenger=challenger.model_version,
                    champion=champion.version,
                    corpus=corpus.root,
                    files=files,
                    hours=cfg.continual.approval_hours,
                    name=name,
                    run=child,
                )
            outcome = apply_decision(
                verdict, name=name, challenger=challenger.model_version, champion=champion.version, run=child
            )
        if not outcome.champion_moved:  # else left new: the next cycle judges it against the new champion
            close_cycle(corpus, files, batch, run)
        versions = (champion.version, challenger.model_version)
        mixed = {k: mix.counts[k] for k in ("new_documents", "replay_documents")}
        return _judged(
            verdict, outcome, versions=versions, files=files, assessment=assessment, config=cfg, run=run, mix=mixed
        )


def _judged(
    verdict: GateDecision,
    outcome: PromotionOutcome,
    *,
    versions: tuple[str | None, str],
    files: list[dict[str, str]],
    assessment: Assessment,
    config: PipelineConfig,
    run: Run,
    mix: dict[str, int] | None = None,
) -> State:
    """The decided cycle: a step of the monitoring timeline, and the flow run's final state."""
    previous, challenger = versions
    word = "promoted" if outcome.promoted else "rejected"
    name = config.registry.model_name
    record_on_timeline(
        assessment,
        word,
        name=name,
        champion=outcome.champion_version,
        batch=verdict.batch,
        config=config,
        home=run.home,
    )
    summary = CycleSummary(
        new_files=[f["staged"] for f in files],
        promoted=outcome.promoted,
        reason=outcome.reason,
        previous_champion=previous,
        challenger=challenger,
        champion=outcome.champion_version,
        slices={slice_: _named(numbers) for slice_, numbers in verdict.slices.items()},
        classification=verdict.probe,
        run_id=run.run_id,
        mix=mix or {},
        decision=word,
        batch=verdict.batch,
        assessment=assessment.numbers(),
        retrain_reasons=assessment.reasons,
    )
    return decided(summary, word, f"{word} v{challenger}: {outcome.reason}")


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
