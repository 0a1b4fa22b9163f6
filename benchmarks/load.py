"""Load: N concurrent triggers of the continual deployment against one real Prefect server, with a
new batch of data waiting, and what was held.

    python benchmarks/load.py [--triggers 20] [--docs 20000] [--json]

It starts a Prefect server on loopback (its own PREFECT_HOME), trains a champion with ``lmloop run``,
writes a new (shifted) batch of ``--docs`` documents into the landing folder, serves the deployments
(``lmloop deploy``), fires ``--triggers`` flow runs of ``continual/continual`` at once, and waits for
all of them. It prints how many completed, were cancelled (the deployment's concurrency limit 1 with
CANCEL_NEW) or failed, how many ran at the same time (must be 0 overlapping), how many promotions
the batch produced (at most 1), whether the alias history is consistent, and the times.
``tests/reliability/test_load.py`` runs the same driver with 20 triggers and a small batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmloop.ops.servers import free_port, prefect_server_command, start, stop, wait_http  # noqa: E402

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SMALL = [
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.block_size=64",
    "tokenizer.vocab_size=512",
    "train.max_steps=120",
    "train.batch_size=16",
    "train.log_every=20",
    "finetune.max_steps=60",
    "finetune.batch_size=16",
    "finetune.log_every=20",
    "finetune.learning_rate=3e-4",
    "continual.tolerance=0.05",
    "continual.replay_ratio=2.0",
    "continual.bootstrap_samples=300",
    "eval.samples=0",
]


def _lmloop(args: list[str], env: dict[str, str], timeout: int = 900) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"lmloop {args[0]} failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def _trigger(n: int) -> list[str]:
    """``n`` flow runs of continual/continual created at the same moment."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name("continual/continual")
        runs = await asyncio.gather(
            *(client.create_flow_run_from_deployment(deployment.id, tags=["load"]) for _ in range(n))
        )
    return [str(r.id) for r in runs]


async def _read(ids: list[str]) -> list[Any]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return list(await asyncio.gather(*(client.read_flow_run(i) for i in ids)))


def _overlaps(spans: list[tuple[float, float]]) -> int:
    """Consecutive [start, end] intervals (sorted by start) that intersect."""
    spans = sorted(spans)
    return sum(1 for (_, end), (start2, _) in zip(spans, spans[1:], strict=False) if start2 < end)


def _training_spans(home: Path) -> list[tuple[float, float]]:
    """When each continual cycle's MLflow run (where its training happens) started and ended."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}", f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lmloop")
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'continual'")
    return [(r.info.start_time, r.info.end_time or float("inf")) for r in runs]


def _alias_history_consistent(home: Path, first_champion: str, final: dict[str, Any]) -> tuple[bool, list[dict]]:
    """Every promotion was judged against the champion of its time, and the aliases end where it says."""
    path = home / "state" / "gate_history.jsonl"
    events = [json.loads(line) for line in path.open()] if path.exists() else []
    champion, ok = first_champion, True
    for event in events:
        if event.get("event") != "gate":
            continue
        if event["promoted"]:
            ok &= event["champion"] == champion
            champion = event["challenger"]
    ok &= final["aliases"]["champion"]["version"] == champion
    promoted = [e for e in events if e.get("promoted")]
    if promoted:
        ok &= (final["aliases"]["previous_champion"] or {}).get("version") == promoted[-1]["champion"]
    return bool(ok), events


def run_load(workdir: Path, triggers: int, docs: int, timeout: float = 900) -> dict[str, Any]:
    home, corpus, landing = workdir / "home", workdir / "corpus", workdir / "home" / "landing"
    port = free_port()
    env = {**os.environ, "LMLOOP_HOME": str(home), "PREFECT_HOME": str(workdir / "prefect")}
    env |= {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update({k: env[k] for k in ("PREFECT_API_URL", "PREFECT_HOME")})
    sets = [a for s in SMALL for a in ("--set", s)]
    server = start(prefect_server_command("127.0.0.1", port), workdir / "prefect-server.log", env)
    served = None
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", 120, server)
        t0 = time.monotonic()
        _lmloop(["sample-data", "--out", str(corpus), "--docs", "1200", "--files", "2"], env)
        champion = _lmloop(["run", "--data", str(corpus), *sets], env)
        train_s = time.monotonic() - t0
        batch = _lmloop(["sample-data", "--out", str(landing), "--seed", "7", "--shift", "--docs", str(docs)], env)
        served = start(
            [sys.executable, "-m", "cli", "deploy", "--cron", "0 0 1 1 *", *sets],
            workdir / "deploy.log",
            env,
        )
        from prefect.client.orchestration import get_client

        async def _ready() -> bool:
            async with get_client() as client:
                try:
                    await client.read_deployment_by_name("continual/continual")
                    return True
                except Exception:
                    return False

        deadline = time.monotonic() + 180
        while not asyncio.run(_ready()):
            if time.monotonic() > deadline or served.poll() is not None:
                raise RuntimeError(f"deployments never appeared; see {workdir / 'deploy.log'}")
            time.sleep(1)
        t1 = time.monotonic()
        ids = asyncio.run(_trigger(triggers))
        deadline = time.monotonic() + timeout
        runs = asyncio.run(_read(ids))
        while any(r.state_type.value not in TERMINAL for r in runs) and time.monotonic() < deadline:
            time.sleep(2)
            runs = asyncio.run(_read(ids))
        load_s = time.monotonic() - t1
    finally:
        for process in (served, server):
            if process is not None:
                stop(process)
    states: dict[str, int] = {}
    for r in runs:
        states[r.state_type.value] = states.get(r.state_type.value, 0) + 1
    final = _lmloop(["status", "--set", "registry.model_name=lmloop-lm"], env)
    consistent, events = _alias_history_consistent(home, champion["model_version"], final)
    executed = [r for r in runs if r.state_type.value != "CANCELLED"]
    flow_spans = [
        (r.start_time.timestamp(), (r.end_time or r.start_time).timestamp()) for r in executed if r.start_time
    ]
    trainings = _training_spans(home)
    gates = [e for e in events if e.get("event") == "gate"]
    return {
        "triggers": triggers,
        "batch_documents": batch["documents"],
        "batch_mb": round(batch["bytes"] / 1e6, 2),
        "states": states,
        "runs_executed": len(executed),
        "trainings": len(trainings),
        "overlapping_runs": _overlaps(flow_spans),
        "overlapping_trainings": _overlaps(trainings),
        "promotions": sum(1 for e in gates if e["promoted"]),
        "gate_decisions": len(gates),
        "last_gate_reason": gates[-1]["reason"] if gates else None,
        "alias_history_consistent": consistent,
        "champion_before": champion["model_version"],
        "champion_after": final["aliases"]["champion"]["version"],
        "unfinished": sum(1 for r in runs if r.state_type.value not in TERMINAL),
        "train_champion_s": round(train_s, 1),
        "load_s": round(load_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=20)
    parser.add_argument("--docs", type=int, default=20000, help="documents in the new batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lmloop-load-") as tmp:
        out = run_load(Path(tmp), args.triggers, args.docs)
    for key, value in out.items():
        print(f"{key:>26}: {value}")
    held = (
        out["overlapping_runs"] == 0
        and out["overlapping_trainings"] == 0
        and out["promotions"] <= 1
        and out["alias_history_consistent"]
        and out["unfinished"] == 0
    )
    print(f"{'held':>26}: {held}")
    if args.json:
        print(json.dumps({**out, "held": held}))


if __name__ == "__main__":
    main()
