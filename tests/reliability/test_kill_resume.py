"""kill -9 the training flow at a random step, run it again: it resumes, finishes within 1% of an
uninterrupted run's final loss, and everything lands in one MLflow run with no step logged twice."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MLFLOW_URIS, store_client

pytestmark = pytest.mark.slow

SETTINGS = [
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.block_size=64",
    "tokenizer.vocab_size=512",
    "train.max_steps=240",
    "train.batch_size=16",
    "train.warmup_steps=10",
    "train.log_every=10",
    "train.checkpoint_every=20",
    "eval.samples=0",
]


def _command(corpus: Path) -> list[str]:
    sets = [a for s in SETTINGS for a in ("--set", s)]
    return [sys.executable, "-m", "cli", "run", "--data", str(corpus), "--run-name", "kill-test", *sets, "--json"]


SHARED: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _shared_prefect_server(prefect_api: str) -> None:
    SHARED["PREFECT_API_URL"] = prefect_api


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "LMLOOP_HOME": str(home), **SHARED}
    for key in ("PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)
    return env


def _run(corpus: Path, home: Path) -> dict:
    proc = subprocess.run(_command(corpus), env=_env(home), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _newest_checkpoint_step(home: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in home.glob("work/*/checkpoints/step-*") if not p.name.endswith(".tmp")]
    return max(steps, default=0)


def test_kill_9_mid_training_then_rerun_resumes_into_the_same_run(corpus: Path, tmp_path: Path) -> None:
    reference = _run(corpus, tmp_path / "reference")

    home = tmp_path / "killed"
    target = random.Random().choice(range(40, 200, 20))
    proc = subprocess.Popen(
        _command(corpus), env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _newest_checkpoint_step(home) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole flow process
    proc.wait()
    killed_at = _newest_checkpoint_step(home)
    assert 0 < killed_at < 240

    resumed = _run(corpus, home)
    assert resumed["metrics"]["train_final_loss"] == pytest.approx(reference["metrics"]["train_final_loss"], rel=0.01)

    client = store_client(home)
    runs = client.search_runs([client.get_experiment_by_name("lmloop").experiment_id])
    assert [r.info.run_id for r in runs] == [resumed["run_id"]], "one MLflow run, resumed"
    steps = [m.step for m in client.get_metric_history(resumed["run_id"], "train_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 240, "no step logged twice, none missing at the end"
    assert client.get_run(resumed["run_id"]).data.metrics["train_resumed_from"] >= killed_at - 20
