"""The continual loop as a monitored service, run from the terminal as a team runs it: a batch like the
trained data is deferred in seconds; a drifted batch is trained and, with approval required, waits; a kill
during the wait and a rerun ask again without training; ``lmloop approve`` promotes; a person rejects a
second one; an unanswered one times out as rejected; rejected data; every step is a Prefect event, a step of ``monitor-<model>`` and a line of
``lmloop status``; ``lmloop deploy --notify-webhook`` makes an Automation that calls a webhook on promotion.

The tests of this module run in order, on one home."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from lmloop.core.presets import load_config
from lmloop.data.sample_data import write_corpus
from lmloop.ops.servers import free_port
from tests.conftest import MLFLOW_URIS, mlflow_store, store_client

pytestmark = pytest.mark.slow
NAME = "watched-lm"
SETS = ["model.n_layer=2", "model.n_embd=64", "model.n_head=2", "model.block_size=64", "tokenizer.vocab_size=512"]
SETS += ["train.max_steps=200", "train.batch_size=16", "train.log_every=50", "eval.samples=0"]
SETS += ["finetune.max_steps=60", "finetune.batch_size=16", "finetune.log_every=20", "finetune.checkpoint_every=60"]
SETS += ["continual.bootstrap_samples=500", f"registry.model_name={NAME}"]
APPROVAL = ["continual.approval=required"]
HOOKS: list[dict] = []  # what the webhook received


@pytest.fixture(scope="module")
def home(prefect_harness, tmp_path_factory: pytest.TempPathFactory):
    """A home with a champion trained on distribution A (in process, as `lmloop run` would)."""
    from flows.training import training_flow

    root = tmp_path_factory.mktemp("watched-home")
    with pytest.MonkeyPatch.context() as mp, mlflow_store(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"):
        mp.setenv("LMLOOP_HOME", str(root))
        write_corpus(root / "a", seed=0, docs=1200, files=2)
        training_flow(config=load_config("tiny", SETS), data=[str(root / "a")])
    return root


@pytest.fixture(scope="module")
def env(home: Path, prefect_api: str) -> dict[str, str]:
    store = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    return {**os.environ, "LMLOOP_HOME": str(home), **dict.fromkeys(MLFLOW_URIS, store), "PREFECT_API_URL": prefect_api}


def _sets(*extra: str) -> list[str]:
    return [arg for s in [*SETS, *extra] for arg in ("--set", s)]


def lmloop(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def cycle(env: dict[str, str], landing: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "cli", "continual", "--incoming", str(landing), *_sets(*extra), "--json"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def journals(home: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (home / "state" / "cycles").glob("*.json")}


def wait_for_request(home: Path, proc: subprocess.Popen, timeout: float = 300) -> str:
    """The batch whose approval ``proc`` waits for (its journal names ``proc`` as the waiting process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for batch, journal in journals(home).items():
            asked = journal.get("approval")
            if asked and asked["pid"] == proc.pid and not journal.get("answer") and journal.get("outcome") is None:
                return batch
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(1)
    raise AssertionError("no approval requested")


def client(home: Path):
    return store_client(home)


def versions(home: Path) -> list[str]:
    return sorted((str(v.version) for v in client(home).search_model_versions(f"name='{NAME}'")), key=int)


def champion(home: Path) -> str:
    return str(client(home).get_model_version_by_alias(NAME, "champion").version)


def runs_named(home: Path, prefix: str) -> list:
    c = client(home)
    experiment = c.get_experiment_by_name(load_config("tiny", SETS).registry.experiment).experiment_id
    return [r for r in c.search_runs([experiment], max_results=500) if (r.info.run_name or "").startswith(prefix)]


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        HOOKS.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> str:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/hook"
    server.shutdown()


def test_deploy_creates_the_promotion_automation(env: dict[str, str], webhook: str) -> None:
    proc = lmloop(env, "deploy", "--pool", "watched-pool", "--notify-webhook", webhook, *_sets())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "POSTs to the webhook" in " ".join(proc.stderr.split()), proc.stderr[-3000:]
    from prefect.automations import Automation
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        made = Automation.read(name=f"lmloop: {NAME} promoted -> webhook")
    assert made.trigger.expect == {"lmloop.model.promoted"}
    assert made.actions[0].type == "call-webhook"


def test_a_batch_like_the_trained_data_is_deferred_in_seconds(home: Path, env: dict[str, str]) -> None:
    write_corpus(home / "land-same", seed=0, docs=300, files=1, skip=1200)  # more of A, never trained on
    started = time.monotonic()
    proc = cycle(env, home / "land-same")
    stdout, stderr = proc.communicate(timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 0, stderr[-3000:]
    out = last_json(stdout)
    assert out["decision"] == "deferred" and out["promoted"] is None, out
    assert out["assessment"]["drift_detected"] == 0.0 and out["assessment"]["drift_auc"] < 0.6
    assert abs(out["assessment"]["fit_gap_bits_per_byte"]) < 0.05
    assert "deferred" in stdout and "no drift" in out["reason"]
    assert runs_named(home, "continual-") == [], "no training run"
    deferred = json.loads((home / "state" / "deferred.json").read_text())
    assert len(deferred) == 1
    print(f"deferred cycle: {took:.1f} s, the command included")
    assert took < 60, took  # the flow itself: see test_events_and_the_timeline


def test_a_drifted_batch_waits_for_approval_a_kill_asks_again_and_approve_promotes(
    home: Path, env: dict[str, str]
) -> None:
    write_corpus(home / "land-drift", seed=0, shift=True, docs=400, files=1)
    before = champion(home)
    first = cycle(env, home / "land-drift", *APPROVAL)
    batch = wait_for_request(home, first)
    trained = versions(home)
    assert len(trained) == 2, "the challenger was trained and registered before the pause"
    assert champion(home) == before, "nothing is promoted before a person answers"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    second = cycle(env, home / "land-drift", *APPROVAL)
    assert wait_for_request(home, second) == batch
    assert versions(home) == trained, "the rerun asked again without training another challenger"
    assert len(runs_named(home, "train")) == 1, "nor a second training run"

    proc = lmloop(env, "approve", batch, "--comment", "reviewed the samples")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the waiting cycle goes on now" in proc.stderr
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-3000:]
    out = last_json(stdout)
    assert out["promoted"] is True and out["decision"] == "promoted", out
    assert champion(home) == out["challenger"] == trained[-1]
    assert len(out["new_files"]) == 2, "the deferred file trained with the batch that triggered"
    assert out["assessment"]["drift_detected"] == 1.0
    assert not json.loads((home / "state" / "deferred.json").read_text())
    note = client(home).get_model_version(NAME, out["challenger"]).description
    assert "approved by" in note and "reviewed the samples" in note
    history = [json.loads(line) for line in (home / "state" / "gate_history.jsonl").open()]
    assert "approved by" in history[-1]["reason"] and "via lmloop approve" in history[-1]["reason"]
    deadline = time.monotonic() + 60  # the Automation made by `lmloop deploy --notify-webhook`
    while not any(h.get("model") == NAME for h in HOOKS) and time.monotonic() < deadline:
        time.sleep(1)
    assert any(h.get("model") == NAME and h.get("version") == out["challenger"] for h in HOOKS), HOOKS


def test_a_person_rejects_a_second_drifted_batch_and_the_champion_stays(home: Path, env: dict[str, str]) -> None:
    write_corpus(home / "land-other", seed=9, shift=True, docs=300, files=1)
    before = champion(home)
    lenient = ["continual.margin=-10", "continual.tolerance=10"]  # the gate recommends it: a person says no
    proc = cycle(env, home / "land-other", *APPROVAL, *lenient)
    batch = wait_for_request(home, proc)
    answered = lmloop(env, "reject", batch, "--reason", "legal has not cleared this source")
    assert answered.returncode == 0, answered.stderr[-3000:]
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    out = last_json(stdout)
    assert out["promoted"] is False and out["decision"] == "rejected", out
    assert "rejected by" in out["reason"] and "legal has not cleared" in out["reason"]
    assert champion(home) == before
    again = lmloop(env, "approve", batch)
    assert again.returncode == 2 and "not waiting for an approval" in again.stderr
    assert "Traceback" not in again.stderr


def test_an_unanswered_request_times_out_as_rejected(home: Path, env: dict[str, str]) -> None:
    write_corpus(home / "land-late", seed=11, shift=True, docs=300, files=1)
    before = champion(home)
    lenient = ["continual.margin=-10", "continual.tolerance=10"]
    proc = cycle(env, home / "land-late", *APPROVAL, "continual.approval_hours=0.002", *lenient)  # 7 s
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    out = last_json(stdout)
    assert out["promoted"] is False and "via timeout: no answer within 0.002 hours" in out["reason"], out
    assert champion(home) == before


def test_rejected_data_is_told_too(home: Path, env: dict[str, str]) -> None:
    landing = home / "land-bad"
    landing.mkdir()
    (landing / "bad.jsonl").write_bytes(random.Random(3).randbytes(20_000))
    proc = cycle(env, landing)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "data rejected" in stderr, stderr[-3000:]
    assert last_json(stdout)["status"] == "rejected"


def test_events_and_the_timeline(home: Path, env: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lmloop.registry import monitor

    expected = {"lmloop.batch.deferred", "lmloop.drift.detected", "lmloop.approval.requested"}
    expected |= {"lmloop.model.promoted", "lmloop.model.rejected", "lmloop.data.rejected"}
    deadline = time.monotonic() + 60  # the server stores events in batches, every few seconds
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as c:
        while True:
            page = c.read_events(EventFilter(event=EventNameFilter(prefix=["lmloop."])), limit=50)
            ours = [e for e in page.events if e.resource.get("prefect.resource.id") == f"lmloop.model.{NAME}"]
            names = {e.event for e in ours}
            if expected <= names or time.monotonic() > deadline:
                break
            time.sleep(2)
        runs = c.read_flow_runs()
    assert expected <= names, names
    promoted = next(e for e in ours if e.event == "lmloop.model.promoted")
    assert promoted.payload["model"] == NAME and promoted.payload["version"] == champion(home)
    assert "new_slice_improvement" in promoted.payload
    deferred = [r for r in runs if r.name == "continual-deferred"]
    assert deferred and deferred[0].total_run_time.total_seconds() < 15, deferred

    with mlflow_store(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"):
        experiment = load_config("tiny", SETS).registry.experiment
        run_id = monitor.monitor_run(experiment, NAME, create=False)
        steps = monitor.timeline(run_id)
        artifacts = [a.path for a in client(home).list_artifacts(run_id, "monitor")]
    decisions = [monitor.decision_name(s["decision"]) for s in steps]
    assert decisions == ["deferred", "promoted", "rejected", "rejected", "data-rejected"], decisions
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert steps[1]["drift_auc"] > steps[0]["drift_auc"] and steps[1]["champion_version"] == 2.0
    assert "monitor/timeline.png" in artifacts
    status = last_json(lmloop(env, "status", *_sets(), "--json").stdout)
    assert len(status["cycles"]) == 5 and "promoted" in status["cycles"][1]
