"""Continual-cycle tasks: what is new, the replay mix, the judgement, the champion move, closing the cycle."""

from __future__ import annotations

import contextlib
import contextvars
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.input import RunInput

from lmloop.continual import approval, cycle, journal, judge, monitor
from lmloop.continual.assess import Assessment, assess
from lmloop.continual.journal import ApprovalAnswer, ApprovalRequest, apply_gate
from lmloop.continual.landing import new_files, reject, unconsumed, waiting
from lmloop.continual.report import report_assessment, report_mix
from lmloop.core.config import ContinualConfig, EvalConfig, PipelineConfig
from lmloop.core.settings import Home
from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.ops.servers import runnable
from lmloop.promotion.gate import report_markdown
from lmloop.promotion.report import report_gate
from lmloop.promotion.values import GateDecision, PromotionOutcome
from lmloop.registry import model_registry
from lmloop.registry.runs import RunIndex, run_key
from lmloop.training import pretrain
from lmloop.training.values import BaseModelRef, Blocks, TrainedModel
from tasks.tracking import reporter


@task
def find_new_files(landing: str, home: Home, settle: float = 0.0) -> list[dict[str, str]]:
    """New landing files that stopped changing, copied into ``work/incoming`` (the cycle reads those copies)."""
    return new_files(Path(landing), State(home.state), home.work / "incoming", settle)


@task
def still_new(files: list[dict[str, str]], home: Home) -> bool:
    """Whether no other cycle consumed any of ``files`` while this one waited for the batch."""
    return len(unconsumed(files, State(home.state))) == len(files)


@task
def reject_files(files: list[dict[str, str]], report: dict[str, Any], *, batch: str, run: Run) -> list[str]:
    """The landing files the data gate rejected are consumed as rejected (their copies are in quarantine):
    the next cycle neither reads them again nor counts them against its batch. Files of the batch that
    passed stay new. Returns the rejected files' landing URIs."""
    return reject(files, report, batch, State(run.home.state))


@task
def start_cycle(name: str, batch: str, run: Run) -> str:
    """The champion version this cycle starts from (the same on every rerun of the cycle, unless the champion
    moved before it was judged: then the champion now, and the earlier attempt's checkpoints are dropped)."""
    parent, replanned = cycle.cycle_parent(name, batch, State(run.home.state))
    if replanned:
        get_run_logger().warning("the champion moved before this cycle was judged: re-planned from v%s", parent)
        for stale in ("checkpoints", "base"):  # trained from, and downloaded for, the old parent
            shutil.rmtree(run.work / stale, ignore_errors=True)
    return parent


@task
def mix_and_pack(corpus: Corpus, base: BaseModelRef, *, replay_ratio: float, seed: int, run: Run) -> Blocks:
    """New data + a replay sample of old training data; the mixture is logged as a dataset input."""
    state, cache = State(run.home.state), run.home.tokens
    out = cycle.pack_mix(
        corpus, base, replay_ratio=replay_ratio, seed=seed, state=state, tokens_cache=cache, out=run.work
    )
    report_mix(reporter(run), out, corpus)
    return out


@task
def judge_challenger(
    base: BaseModelRef,
    trained: TrainedModel,
    corpus: Corpus,
    *,
    batch: str,
    gate: ContinualConfig,
    limits: EvalConfig,
    run: Run,
) -> GateDecision:
    state = State(run.home.state)
    return judge.judge(base, trained, corpus, batch=batch, gate=gate, state=state, limits=limits)


@task
def apply_decision(
    decision: GateDecision, *, name: str, challenger: str, champion: str | None, run: Run
) -> PromotionOutcome:
    """Promote or not, under the lock, re-reading the champion, once per batch; reported to MLflow and Prefect."""
    outcome = apply_gate(decision, name=name, challenger=challenger, champion=champion, state=State(run.home.state))
    report_gate(
        reporter(run),
        decision,
        outcome,
        name=name,
        challenger=challenger,
        champion=champion,
        plots=run.work / "plots",
    )
    event = "lmloop.model.promoted" if outcome.promoted else "lmloop.model.rejected"
    payload = {"batch": decision.batch, "champion": outcome.champion_version, "previous": champion}
    payload |= {"reason": outcome.reason[:2000]}
    announce(event, name, version=challenger, payload=payload | decision.numbers())
    return outcome


@task
def resume_approval(batch: str, run: Run) -> tuple[GateDecision, ApprovalRequest] | None:
    """A cycle that asked for approval before it was stopped: its decision and request (nothing is trained
    again); None when it never asked, or applied the answer already."""
    found = journal.CycleJournal.of(State(run.home.state), batch)
    if found.approval is None or found.decision is None or found.outcome is not None:
        return None
    return found.decision, found.approval


@task
def close_cycle(corpus: Corpus, files: list[dict[str, str]], batch: str, run: Run) -> None:
    """Trained ids, replay corpus, frozen slice, watermark: recorded once, whatever crashed before."""
    journal.close_cycle(State(run.home.state), corpus, files, batch)


# -- the retraining policy, the monitoring timeline, approval and events


@task
def waiting_files(home: Home) -> list[dict[str, str]]:
    """The files earlier cycles deferred: they join this batch."""
    return waiting(State(home.state))


@task
def started_before(batch_key: str, home: Home) -> bool:
    """Whether an earlier attempt at this batch opened its run (the policy said retrain, or --force): its
    rerun trains on, whatever the policy would say now."""
    return RunIndex(home.run_index).resumable(batch_key) is not None


@task
def assess_batch(
    fresh: list[dict[str, str]],
    deferred: list[dict[str, str]],
    *,
    name: str,
    champion: str,
    config: PipelineConfig,
    home: Home,
    force: bool,
) -> Assessment:
    """Drift and size of the new files against ``@champion`` (downloaded once per version), before any
    training; the policy's verdict: retrain, or defer."""
    folder = home.work / "monitor" / f"{name}-v{champion}"
    fetched = model_registry.fetch_model(name, champion, folder)
    base = pretrain.base_model_ref(name, fetched, config.model)
    created = model_registry.version_created(name, champion)
    found = assess(
        fresh, base, deferred=deferred, config=config, state=State(home.state), champion_created=created, force=force
    )
    get_run_logger().info("retraining policy: %s — %s", "retrain" if found.retrain else "defer", found.summary())
    return found


@task
def defer_batch(
    fresh: list[dict[str, str]], assessment: Assessment, *, name: str, config: PipelineConfig, home: Home
) -> str:
    """The new files wait for a batch that triggers (not consumed); the deferral is a step of the timeline
    and an event. Returns the deferral's name."""
    batch = f"deferred-{run_key('defer', sorted(f['sha256'] for f in fresh))[:8]}"
    State(home.state).defer_files(fresh, batch)
    record_on_timeline(
        assessment, "deferred", name=name, champion=assessment.champion_version, batch=batch, config=config, home=home
    )
    announce(
        "lmloop.batch.deferred", name, payload={"batch": batch, "reasons": assessment.reasons, **assessment.numbers()}
    )
    return batch


@task
def record_on_timeline(
    assessment: Assessment | None,
    decision: str,
    *,
    name: str,
    champion: str | None,
    batch: str,
    config: PipelineConfig,
    home: Home,
) -> int:
    """The cycle as the next step of ``monitor-<model>`` (drift, fit, size, decision, champion)."""
    return monitor.record_cycle(
        config.registry.experiment,
        name,
        assessment=assessment,
        decision=decision,
        champion=champion,
        batch=batch,
        work=home.work,
        lock=home.state / "locks" / "monitor.db",
    )


@task
def report_policy(assessment: Assessment, *, batch: str, run: Run) -> None:
    """The policy's figures and verdict on the cycle's run (a rerun of a crashed cycle trains on whatever
    the policy says now: :func:`started_before`)."""
    report_assessment(reporter(run), assessment, batch=batch)


class Approval(RunInput):
    """The answer to a promotion waiting for approval (the Prefect UI's resume form)."""

    approve: bool = False
    comment: str = ""
    by: str = ""


def ask_for_approval(decision: GateDecision, **asked: Any) -> GateDecision:
    """Pause the flow run until a person answers (``lmloop approve|reject BATCH``, or the Prefect UI's
    resume form); unanswered within ``hours`` it is rejected. The request and the answer are journalled,
    so a rerun after a crash asks again without training, or applies an answer given meanwhile. Returns
    the decision as the person made it (promoted only when approved; who, when and why in its reason).
    ``asked``: the keywords of :func:`_answer` (the versions, the corpus and files, the hours, the run)."""
    return approval.with_answer(decision, _answer(decision, **asked))


def _answer(
    decision: GateDecision,
    *,
    challenger: str,
    champion: str | None,
    corpus: str,
    files: list[dict[str, str]],
    hours: float,
    name: str,
    run: Run,
) -> ApprovalAnswer:
    from prefect.context import FlowRunContext

    state, batch = State(run.home.state), decision.batch
    known = journal.CycleJournal.of(state, batch)
    if known.answer is not None:
        return known.answer
    context = FlowRunContext.get()
    flow_run_id = str(context.flow_run.id) if context and context.flow_run else None
    made = approval.request(
        state,
        batch,
        challenger=challenger,
        champion=champion,
        corpus=corpus,
        files=files,
        flow_run_id=flow_run_id,
        hours=hours,
    )
    report = reporter(run)
    wait = max(1, int(made.expires_at - time.time()))
    lines = (
        f"**Waiting for approval:** the gate recommends promoting {name} v{challenger} over v{champion}.\n\n"
        f'Approve: `lmloop approve {batch}`  \nReject: `lmloop reject {batch} --reason "..."`\n\n'
        f"Unanswered by {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(made.expires_at))}, it is rejected.\n\n"
    )
    report.markdown(
        lines + report_markdown(decision.comparison, champion, challenger),
        "approval",
        f"{name}: approve v{challenger}?",
    )
    report.tags({"lmloop.awaiting_approval": batch})
    announce("lmloop.approval.requested", name, version=challenger, payload={"batch": batch, "champion": champion})
    cli = runnable("lmloop")
    print(
        f"waiting for approval of {name} v{challenger}: run `{cli} approve {batch}` or `{cli} reject {batch} --reason ...`"
    )
    given = _paused(wait, key=f"approval-{batch}")
    known = journal.CycleJournal.of(state, batch)
    if known.answer is not None:  # `lmloop approve` wrote who and why before resuming the flow run
        return known.answer
    if given is None:
        return approval.timed_out(state, batch, hours)
    answer = ApprovalAnswer(
        approved=given.approve, by=given.by or "Prefect UI", at=time.time(), comment=given.comment, via="Prefect UI"
    )
    return known.answered(state, answer).answer or answer


PAUSE_GRACE = 600.0  # Prefect's own pause deadline, past ours: a pause Prefect expires fails the flow run


def _paused(wait: float, *, key: str) -> Approval | None:
    """Pause this flow run until its input comes (a person), or ``wait`` seconds pass (then None). At the
    deadline this process resumes the run itself: a pause left to expire in Prefect fails the flow run,
    and the cycle must end with its decision (rejected), not as a failed run."""
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, resume_flow_run

    flow_run_id = FlowRunContext.get().flow_run.id  # type: ignore[union-attr]
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(Exception):  # answered meanwhile: nothing to resume
            resume_flow_run(flow_run_id, run_input={"approve": False, "comment": "", "by": "lmloop"})

    timer = threading.Timer(wait, contextvars.copy_context().run, args=(expire,))  # the API settings go along
    timer.daemon = True
    timer.start()
    try:
        given = pause_flow_run(wait_for_input=Approval, timeout=int(wait + PAUSE_GRACE), poll_interval=2, key=key)
    except FlowPauseTimeout:
        return None
    finally:
        timer.cancel()
    return None if expired.is_set() else given


def announce(event: str, name: str, *, version: str | None = None, payload: dict[str, Any] | None = None) -> None:
    """A Prefect event about model ``name`` (and ``version``), for Automations (a webhook, Slack, e-mail)."""
    from prefect.events import emit_event

    resource = {"prefect.resource.id": f"lmloop.model.{name}", "prefect.resource.name": name}
    related = (
        [
            {
                "prefect.resource.id": f"lmloop.model.{name}.v{version}",
                "prefect.resource.role": "model-version",
                "prefect.resource.name": f"{name} v{version}",
            }
        ]
        if version
        else []
    )
    emit_event(
        event=event, resource=resource, related=related, payload={"model": name, "version": version, **(payload or {})}
    )
