"""Continual-cycle tasks: what is new, the replay mix, the judgement, the champion move, closing the cycle."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from lmloop.continual import cycle, journal, judge
from lmloop.continual.journal import apply_gate
from lmloop.continual.landing import new_files, reject, unconsumed
from lmloop.continual.report import report_mix
from lmloop.core.config import ContinualConfig, EvalConfig
from lmloop.core.settings import Home
from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.promotion.report import report_gate
from lmloop.promotion.values import GateDecision, PromotionOutcome
from lmloop.registry.values import Registered
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
    decision: GateDecision, *, challenger: Registered, champion: BaseModelRef, run: Run
) -> PromotionOutcome:
    """Promote or not, under the lock, re-reading the champion, once per batch; reported to MLflow and Prefect."""
    name, version = challenger.model_name, challenger.model_version
    outcome = apply_gate(
        decision, name=name, challenger=version, champion=champion.version, state=State(run.home.state)
    )
    report_gate(
        reporter(run),
        decision,
        outcome,
        name=name,
        challenger=version,
        champion=champion.version,
        plots=run.work / "plots",
    )
    return outcome


@task
def close_cycle(corpus: Corpus, files: list[dict[str, str]], batch: str, run: Run) -> None:
    """Trained ids, replay corpus, frozen slice, watermark: recorded once, whatever crashed before."""
    journal.close_cycle(State(run.home.state), corpus, files, batch)
