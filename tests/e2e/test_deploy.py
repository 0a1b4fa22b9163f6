"""`lmloop deploy` against a real Prefect server on loopback (one for the module, its log kept):

- on a schedule of a few seconds, the server's scheduler creates the continual flow runs by itself, the served
  deployment runs them to completion, and the server's log holds no scheduler error (SQLAlchemy 2.1 broke
  Prefect 3.8's scheduler while manual triggers kept working);
- triggered with `prefect deployment run`, the continual deployment runs to completion; it has concurrency
  limit 1 and a typed parameter schema."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmloop.ops.servers import free_port, prefect_server_command, start, stop, wait_http
from tests.conftest import MLFLOW_URIS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# what Prefect's scheduler services log when a loop fails (the SQLAlchemy 2.1 failure among them)
SCHEDULER_ERROR = re.compile(r"ERROR.*schedule_(recent_)?deployments|InvalidRequestError|bulk DML")


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _api_post(api: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def _api_delete(api: str, path: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{api}{path}", method="DELETE"), timeout=10)


class Server:
    def __init__(self, api: str, log: Path, env: dict[str, str]) -> None:
        self.api, self.log, self.env = api, log, env

    def deployment(self, name: str) -> dict:
        found = _wait(
            lambda: [d for d in _api_post(self.api, "/deployments/filter", {}) if d["name"] == name], 180, "deployments"
        )
        return found[0]

    def runs_of(self, deployment_id: str) -> list[dict]:
        body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
        return _api_post(self.api, "/flow_runs/filter", body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("deploy")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "LMLOOP_HOME": str(root / "home"), "PREFECT_HOME": str(root / "prefect")}
    env |= {"PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for key in MLFLOW_URIS:
        env.pop(key, None)
    log = root / "server.log"
    process = start(prefect_server_command("127.0.0.1", port), log, env)
    try:
        wait_http(f"{api}/health", 120, process)
        yield Server(api, log, env)
    finally:
        stop(process)


def _deploy(server: Server, *schedule: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "deploy", *schedule],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_scheduler_creates_and_completes_continual_runs_without_a_trigger(server: Server) -> None:
    served = _deploy(server, "--interval", "5")
    try:
        continual = server.deployment("continual")
        schedules = continual["schedules"]
        assert schedules and schedules[0]["schedule"]["interval"] == 5, schedules
        done = _wait(
            lambda: [
                r for r in server.runs_of(continual["id"]) if r["auto_scheduled"] and r["state_type"] == "COMPLETED"
            ],
            240,
            "a flow run created by the scheduler to complete",
        )
        assert done[0]["deployment_id"] == continual["id"]
        assert not [r for r in server.runs_of(continual["id"]) if not r["auto_scheduled"]], "nothing triggered by hand"
    finally:
        _end(served)
        _api_delete(server.api, f"/deployments/{continual['id']}")
    errors = [line for line in server.log.read_text().splitlines() if SCHEDULER_ERROR.search(line)]
    assert not errors, "the Prefect server's scheduler failed:\n" + "\n".join(errors[:5])


def test_continual_deployment_runs_to_completion_when_triggered(server: Server) -> None:
    served = _deploy(server, "--cron", "0 0 1 1 *")
    try:
        continual = server.deployment("continual")
        assert continual["concurrency_limit"] == 1 or continual.get("global_concurrency_limit", {}).get("limit") == 1
        form = continual["parameter_openapi_schema"]["properties"]
        assert "config" in form, "typed parameters: a form in the UI"
        order = sorted(form, key=lambda name: form[name]["position"])
        assert order == ["incoming", "preset", "max_steps", "force", "config"], (
            "the few knobs first, the full config last"
        )
        assert "landing folder" in form["incoming"].get("description", ""), form["incoming"]
        trigger = subprocess.run(
            [BIN / "prefect", "deployment", "run", "continual/continual"],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trigger.returncode == 0, trigger.stderr
        runs = _wait(
            lambda: [
                r for r in server.runs_of(continual["id"]) if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")
            ],
            240,
            "the triggered flow run",
        )
        assert runs[0]["state_type"] == "COMPLETED", runs[0]
        assert not runs[0]["auto_scheduled"]
    finally:
        _end(served)
