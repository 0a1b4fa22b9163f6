from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from lmloop import continual, promotion, tracking
from lmloop.config import ContinualConfig


@task
def find_new_files(landing: str) -> list[dict[str, str]]:
    return continual.new_files(Path(landing))


@task
def mix_and_pack(
    data_dir: str, tokenizer: str, block: int, ratio: float, seed: int, work: str, run_id: str
) -> dict[str, Any]:
    """New data + a replay sample of old training data; the mixture is logged as a dataset input."""
    out = continual.pack_mix(data_dir, tokenizer, block, ratio, seed, Path(work))
    digest = hashlib.sha256(Path(out["manifest"]).read_bytes()).hexdigest()
    tracking.log_dataset(run_id, "train-mix", digest, out["manifest"], context="train-mix")
    tracking.log_artifact(run_id, out["manifest"], "data")
    tracking.log_metrics(run_id, {k: out[k] for k in ("new_documents", "replay_documents")})
    return out


@task
def judge_challenger(
    champion_dir: str, challenger_dir: str, data_dir: str, batch: str, gate: ContinualConfig
) -> dict[str, Any]:
    return continual.judge(
        champion_dir,
        challenger_dir,
        data_dir,
        batch,
        gate.margin,
        gate.tolerance,
        gate.bootstrap_samples,
        dict(gate.classification),
    )


@task
def apply_decision(
    name: str, challenger: str, champion: str, verdict: dict[str, Any], work: str, run_id: str
) -> dict[str, Any]:
    """Promote or not, under the lock, re-reading the champion; report to MLflow and Prefect."""
    new = verdict["decision"]["new_slice"]
    numbers = {"new_slice_improvement": new["improvement"], "new_slice_ci_low": new["ci_low"]}
    for metric, (champ, chall, _) in verdict["decision"]["classification"].items():
        numbers |= {f"probe_{metric}_champion": champ, f"probe_{metric}_challenger": chall}
    outcome = promotion.promote_if_better(name, challenger, champion, verdict["promote"], verdict["reason"], numbers)
    report = verdict["report"].replace("v? ", f"v{challenger} ").replace("(champion v-)", f"(champion v{champion})")
    if not outcome["promoted"] and verdict["promote"]:
        report += f"\n**Not applied:** {outcome['reason']}\n"
    tracking.log_text(run_id, report, "gate/report.md")
    from lmloop.plots import gate_comparison

    title = f"Gate: challenger v{challenger} vs champion v{champion}"
    plot = gate_comparison(verdict["decision"], Path(work) / "plots" / "gate_comparison.png", title)
    tracking.log_artifact(run_id, plot, "gate")
    tracking.set_tags(
        run_id,
        {"gate.decision": "promoted" if outcome["promoted"] else "rejected", "gate.reason": outcome["reason"][:5000]},
    )
    create_markdown_artifact(report, key="gate-report", description=f"{name}: challenger v{challenger}")
    return outcome


@task
def close_cycle(files: list[dict[str, str]], batch: str) -> None:
    continual.advance_watermark(files, batch)
