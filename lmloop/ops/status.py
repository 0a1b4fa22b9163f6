"""What ``lmloop status`` shows: the aliased versions with their key metrics, the last gate decisions
and the last runs — all read from MLflow and the gate history, nothing cached."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lmloop.core import settings
from lmloop.core.settings import Home
from lmloop.data.state import State
from lmloop.promotion.moves import CHALLENGER, CHAMPION, PREVIOUS
from lmloop.registry import model_registry, tracking

KEY_METRICS = ("test_bits_per_byte", "test_perplexity", "unigram_perplexity", "accuracy", "macro_f1")


def _when(millis: int | None) -> str | None:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds") if millis else None


def _version(name: str, alias: str) -> dict[str, Any] | None:
    version = model_registry.alias_version(name, alias)
    if version is None:
        return None
    mv = tracking.client().get_model_version(name, version)
    metrics = tracking.client().get_run(mv.run_id).data.metrics if mv.run_id else {}
    return {
        "version": version,
        "created": _when(mv.creation_timestamp),
        "run_id": mv.run_id,
        "parent_version": mv.tags.get("parent_version"),
        "gate_decision": mv.tags.get("gate.decision"),
        "gate_against": mv.tags.get("gate.champion_version"),
        "metrics": {k: metrics[k] for k in KEY_METRICS if k in metrics},
    }


def like_for_like(name: str, version: dict[str, Any] | None) -> dict[str, Any] | None:
    """``version`` beside the champion it was judged against, on the frozen slices the gate scored both on
    (their own test-set figures come from different documents and do not compare)."""
    if version is None or version["gate_against"] in (None, ""):
        return None
    tags = tracking.client().get_model_version(name, version["version"]).tags
    slices: dict[str, dict[str, float]] = {}
    for key, value in tags.items():
        parts = key.split(".")
        if len(parts) >= 4 and parts[:2] == ["gate", "slice"]:
            role = parts[-1].removesuffix("_bits_per_byte")
            slices.setdefault(".".join(parts[2:-1]), {})[role] = float(value)
    return {"version": version["version"], "against": version["gate_against"], "slices": slices}


def collect(
    model_name: str, experiment: str, home: Home, *, tracking_uri: str, runs: int = 5, decisions: int = 5
) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    aliases = {alias: _version(model_name, alias) for alias in (CHAMPION, CHALLENGER, PREVIOUS)}
    try:
        versions = len(client.search_model_versions(f"name='{model_name}'"))
    except MlflowException:
        versions = 0
    exp = client.get_experiment_by_name(experiment)
    recent = []
    if exp is not None:
        for run in client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"], max_results=runs):
            recent.append(
                {
                    "run_id": run.info.run_id,
                    "name": run.info.run_name,
                    "status": run.info.status,
                    "started": _when(run.info.start_time),
                    "test_bits_per_byte": run.data.metrics.get("test_bits_per_byte"),
                }
            )
    from lmloop.continual.journal import awaiting_approval
    from lmloop.continual.monitor import last_cycles

    state = State(home.state)
    gates = [e for e in state.history() if e.get("model") == model_name][-decisions:]
    compared = [like_for_like(model_name, aliases[a]) for a in (CHAMPION, CHALLENGER)]
    return {
        "model_name": model_name,
        "tracking_uri": settings.redact(tracking_uri),
        "lmloop_home": home.root,
        "versions": versions,
        "aliases": aliases,
        "gate_decisions": gates,
        "comparisons": [c for c in compared if c],
        "runs": recent,
        "cycles": last_cycles(experiment, model_name, decisions) if exp is not None else [],
        "awaiting_approval": [
            {"batch": j.batch, "challenger": j.approval.challenger, "champion": j.approval.champion}
            for j in awaiting_approval(state)
            if j.approval is not None
        ],
        "deferred_files": len(state.deferred()),
    }
