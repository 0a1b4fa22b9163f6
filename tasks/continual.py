"""Continual-cycle tasks: what is new, the replay mix, the judgement, the champion move, closing the cycle."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from lmloop.continual import cycle
from lmloop.continual.landing import new_files
from lmloop.core.config import ContinualConfig, EvalConfig
from lmloop.core.settings import Home
from lmloop.core.values import Run
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.promotion import moves
from lmloop.promotion.values import GateDecision
from lmloop.registry import tracking
from lmloop.registry.values import Registered
from lmloop.training.values import BaseModelRef, Blocks, TrainedModel


@task
def find_new_files(landing: str, home: Home, settle: float = 0.0) -> list[dict[str, str]]:
    """New landing files that stopped changing, copied into ``work/incoming`` (the cycle reads those copies)."""
    return new_files(Path(landing), State(home.state), home.work / "incoming", settle)


@task
def reject_files(files: list[dict[str, str]], report: dict[str, Any], *, batch: str, run: Run) -> list[str]:
    """The landing files the data gate rejected are consumed as rejected (their copies are in quarantine):
    the next cycle neither reads them again nor counts them against its batch. Files of the batch that
    passed stay new. Returns the rejected files' landing URIs."""
    reasons = {_plain(r["file"]): "; ".join(r["reasons"])[:1000] for r in report.get("rejected_files", [])}
    rejected = [f for f in files if _plain(f["staged"]) in reasons]
    State(run.home.state).reject_files(rejected, batch, {f["sha256"]: reasons[_plain(f["staged"])] for f in rejected})
    return [f["uri"] for f in rejected]


def _plain(uri: str) -> str:
    return uri.removeprefix("file://")


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
    state, cache = State(run.home.state), run.home.cache / "tokens"
    out = cycle.pack_mix(
        corpus, base, replay_ratio=replay_ratio, seed=seed, state=state, tokens_cache=cache, out=run.work
    )
    manifest = out.counts["manifest"]
    mixture = {k: out.counts[k] for k in ("new_documents", "replay_documents")}
    profile = {"rows": sum(mixture.values()), **mixture, "corpus": corpus.root}
    tracking.log_dataset(
        run.run_id, "train-mix", out.counts["manifest_sha256"], manifest, context="train-mix", profile=profile
    )
    tracking.log_artifact(run.run_id, Path(manifest), "data")
    tracking.log_metrics(run.run_id, {k: out.counts[k] for k in ("new_documents", "replay_documents")})
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
    return cycle.judge(base, trained, corpus, batch=batch, gate=gate, state=state, limits=limits)


@task
def apply_decision(
    decision: GateDecision, *, challenger: Registered, champion: BaseModelRef, run: Run
) -> dict[str, Any]:
    """Promote or not, under the lock, re-reading the champion; report to MLflow and Prefect."""
    name, version = challenger.model_name, challenger.model_version
    outcome = moves.apply_gate(
        decision, name=name, challenger=version, champion=champion.version, state=State(run.home.state)
    )
    tracking.log_text(run.run_id, outcome["report"], "gate/report.md")
    from lmloop.evaluation.plots import gate_comparison

    title = f"Gate: challenger v{version} vs champion v{champion.version}"
    plot = gate_comparison(decision.comparison, run.work / "plots" / "gate_comparison.png", title)
    tracking.log_artifact(run.run_id, plot, "gate")
    decided = "promoted" if outcome["promoted"] else "rejected"
    for run_id in {run.run_id, run.parent_id or run.run_id}:  # the gate's own run and the cycle's
        tracking.set_tags(run_id, {"gate.decision": decided, "gate.reason": outcome["reason"][:5000]})
        tracking.log_metrics(
            run_id,
            {f"gate_{k}": v for k, v in decision.numbers().items()} | {"gate_promoted": float(outcome["promoted"])},
        )
    described = tracking.client().get_model_version(name, version).description or ""
    if outcome["report"] not in described:  # the version's page shows why it was (not) promoted
        tracking.describe_version(name, version, f"{described}\n\n{outcome['report']}".strip())
    create_markdown_artifact(outcome["report"], key="gate-report", description=f"{name}: challenger v{version}")
    return outcome


@task
def close_cycle(corpus: Corpus, files: list[dict[str, str]], batch: str, run: Run) -> None:
    """Trained ids, replay corpus, frozen slice, watermark: recorded once, whatever crashed before."""
    State(run.home.state).close_cycle(corpus, files, batch)
