"""kill -9 at each step boundary of a continual cycle (a test hook names the point, no timing), then the
same command again: the cycle completes exactly once — one decision applied, the batch consumed once,
aliases and gate history consistent — and the loop goes on with the next batch."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lmloop.data.sample_data import write_corpus
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES, mlflow_store

pytestmark = pytest.mark.slow
NAME = "crash-lm"
SETS = [*TINY_OVERRIDES, f"registry.model_name={NAME}", "finetune.max_steps=10", "finetune.log_every=5"]
SETS += ["finetune.batch_size=8", "eval.samples=0", "eval.max_documents=150", "continual.bootstrap_samples=200"]
SETS += ["continual.tolerance=0.5", "continual.margin=-1.0"]  # any sane challenger is promoted: moves to check
POINTS = ["judged", "promotion-moved", "promotion-recorded", "cycle-recorded"]


def _lmloop(args: list[str], home: Path, api: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LMLOOP_HOME": str(home), "PREFECT_API_URL": api}
    for key in ("LMLOOP_CRASH_AT", *MLFLOW_URIS):  # MLflow exports the last URIs this process used
        env.pop(key, None)
    if crash_at:
        env["LMLOOP_CRASH_AT"] = crash_at
    sets = [a for s in SETS for a in ("--set", s)]
    command = [sys.executable, "-m", "cli", *args, *sets, "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def home(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash-home")
    write_corpus(root / "a", seed=0, docs=600, files=2)
    proc = _lmloop(["run", "--data", str(root / "a")], root, prefect_api)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _state(home: Path) -> dict:
    state = home / "state"
    return {
        "watermark": json.loads((state / "watermark.json").read_text()),
        "history": [json.loads(line) for line in (state / "gate_history.jsonl").open()],
    }


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_a_step_boundary_then_a_rerun_completes_the_cycle_once(
    home: Path, prefect_api: str, point: str
) -> None:
    from lmloop.registry import model_registry, tracking

    landing = home / f"landing-{point}"
    write_corpus(landing, seed=POINTS.index(point) + 30, shift=True, docs=200, files=1)
    killed = _lmloop(["continual", "--incoming", str(landing)], home, prefect_api, crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rerun = _lmloop(["continual", "--incoming", str(landing)], home, prefect_api)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    out = json.loads(rerun.stdout.strip().splitlines()[-1])
    state = _state(home)
    consumed = [v for v in state["watermark"].values() if v["uri"].startswith(str(landing))]
    assert len(consumed) == 1, "consumed once"
    batch = consumed[0]["batch"]
    if point == "cycle-recorded":  # only the close was left: the rerun finished it, nothing else to do
        assert out["new_files"] == [] and out["promoted"] is None
    else:
        assert out["new_files"] and batch == f"batch-{out['run_id'][:8]}", "the rerun resumed the same cycle"
    with mlflow_store(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"):
        versions = tracking.client().search_model_versions(f"name='{NAME}'")
        mine = [v for v in versions if v.tags.get("continual_batch") == batch]
        assert len(mine) == 1, "registered once"
        challenger = str(mine[0].version)
        champion = model_registry.alias_version(NAME, "champion")
    gates = [e for e in state["history"] if e.get("event") == "gate" and e["challenger"] == challenger]
    assert len(gates) == 1, "one decision, applied once"
    promoted = [e for e in state["history"] if e.get("event") in ("gate", "first_champion") and e["promoted"]]
    last = promoted[-1].get("challenger") or promoted[-1].get("champion")
    assert champion == last, "the champion is the last promotion the history records"
    journal = json.loads((home / "state" / "cycles" / f"{batch}.json").read_text())
    assert journal["closed"] is True and journal["decision"]["batch"] == batch
    assert journal["outcome"]["promoted"] == gates[0]["promoted"]
