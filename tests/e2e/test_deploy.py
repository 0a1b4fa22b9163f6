"""`lmloop deploy` against a real Prefect server on loopback: the continual deployment, triggered with
`prefect deployment run`, runs to completion; it has concurrency limit 1 and a typed parameter schema."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lmloop.servers import free_port
from tests.conftest import MLFLOW_URIS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _healthy(api: str) -> bool:
    try:
        return urllib.request.urlopen(f"{api}/health", timeout=2).status == 200
    except OSError:
        return False


def _api_post(api: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_continual_deployment_runs_to_completion_when_triggered(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "LMLOOP_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    env |= {"PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for key in MLFLOW_URIS:
        env.pop(key, None)
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    served = None
    try:
        _wait(lambda: _healthy(api), 120, "the Prefect server")
        served = subprocess.Popen(
            [sys.executable, "-m", "cli", "deploy", "--cron", "0 0 1 1 *"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deployments = _wait(
            lambda: [d for d in _api_post(api, "/deployments/filter", {}) if d["name"] == "continual"],
            180,
            "deployments",
        )
        continual = deployments[0]
        assert continual["concurrency_limit"] == 1 or continual.get("global_concurrency_limit", {}).get("limit") == 1
        form = continual["parameter_openapi_schema"]["properties"]
        assert "config" in form, "typed parameters: a form in the UI"
        order = sorted(form, key=lambda name: form[name]["position"])
        assert order == ["incoming", "preset", "max_steps", "config"], "the few knobs first, the full config last"
        assert "landing folder" in form["incoming"].get("description", ""), form["incoming"]
        trigger = subprocess.run(
            [BIN / "prefect", "deployment", "run", "continual/continual"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trigger.returncode == 0, trigger.stderr
        runs = _wait(
            lambda: [
                r
                for r in _api_post(api, "/flow_runs/filter", {})
                if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")
            ],
            240,
            "the triggered flow run",
        )
        assert runs[0]["state_type"] == "COMPLETED", runs[0]
    finally:
        for proc in (served, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
