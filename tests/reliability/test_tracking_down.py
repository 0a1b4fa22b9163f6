"""The MLflow tracking server dies while a model is being registered: the flow fails within bounded
retries with a clear error, leaves no half-registered version and no alias; once the server is back,
the same command resumes the same run and registers exactly one complete version."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmloop.ops.servers import free_port, start, stop, wait_http
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES, store_client

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
NAME = "down-lm"


def _server(root: Path, port: int) -> subprocess.Popen:
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--serve-artifacts", "--artifacts-destination", (root / "artifacts").as_uri()]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no Huey workers: lmloop submits no jobs
    process = start([*command, "--host", "127.0.0.1", "--port", str(port)], root / "mlflow.log", env)
    wait_http(f"http://127.0.0.1:{port}/health", 120, process)
    return process


def _registration_started(artifacts: Path) -> bool:
    """Registration begins with MLflow 3's log_model uploading a LoggedModel's files (``models/m-*``)."""
    return any(artifacts.glob("*/models/m-*"))


def test_tracking_server_down_at_registration(corpus: Path, tmp_path: Path, prefect_api: str) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LMLOOP_HOME": str(tmp_path / "home"), **dict.fromkeys(MLFLOW_URIS, uri)}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect")}
    env["PREFECT_API_URL"] = prefect_api
    # one HTTP retry per call instead of the default 3 keeps this test short (with 3: ~70 s to fail)
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
    sets = [a for s in [*TINY_OVERRIDES, f"registry.model_name={NAME}"] for a in ("--set", s)]
    command = [sys.executable, "-m", "cli", "run", "--data", str(corpus), "--run-name", "down", *sets, "--json"]

    server = _server(tmp_path / "mlflow", port)
    flow = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while not _registration_started(tmp_path / "mlflow" / "artifacts") and time.monotonic() < deadline:
        assert flow.poll() is None, flow.stderr.read()[-3000:]
        time.sleep(0.02)
    stop(server, crash=True)  # the whole server, workers included, gone at once
    killed = time.monotonic()
    stdout, stderr = flow.communicate(timeout=300)
    failed_after = time.monotonic() - killed

    print(f"tracking server down: the flow failed {failed_after:.1f}s after the server stopped")
    assert flow.returncode == 1, stderr[-3000:]
    assert failed_after < 90, f"bounded retries: gave up after {failed_after:.0f}s"
    assert f"MLflow at {uri}" in stderr or uri.replace("http://", "") in stderr, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1])["status"] == "failed"

    server = _server(tmp_path / "mlflow", port)  # the same store, back up
    try:
        client = store_client(uri)
        versions = client.search_model_versions(f"name='{NAME}'")
        assert all("lmloop.registration_key" in v.tags and "test_perplexity" in v.tags for v in versions), (
            "a version that exists is complete"
        )
        assert all(not v.aliases for v in versions), "no alias on a model whose flow failed"

        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        out = json.loads(rerun.stdout.strip().splitlines()[-1])
        versions = client.search_model_versions(f"name='{NAME}'")
        assert len(versions) == 1 and out["aliases"] == ["champion"], (out, rerun.stderr[-3000:])
        runs = client.search_runs([client.get_experiment_by_name("lmloop").experiment_id])
        assert [r.info.run_id for r in runs] == [out["run_id"]], "the failed run was resumed, not duplicated"
    finally:
        stop(server)
