"""The README's team setup, for real: an MLflow tracking server on PostgreSQL with proxied artifacts
and basic auth, a Prefect server on PostgreSQL with an API auth string, the promotion lock in
PostgreSQL, a process work pool and a worker. Training registers a champion through the server; a
continual cycle, triggered like a user would and run by the worker, promotes a better model.

Skipped, with the reason shown, where no PostgreSQL answers (``LMLOOP_TEST_PG``, default
``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lmloop.data.sample_data import write_corpus
from lmloop.ops.servers import free_port, start, stop, wait_http
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PG = os.environ.get("LMLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN, PASSWORD = "admin", "team-" + secrets.token_hex(8)
PREFECT_AUTH = f"lmloop:{secrets.token_hex(8)}"
NAME = "team-lm"


def _pg(sql: str, database: str | None = None) -> list[tuple]:
    import psycopg

    url = PG if database is None else PG.rsplit("/", 1)[0] + f"/{database}"
    conn = psycopg.connect(url, connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _url(database: str, driver: str = "postgresql+psycopg") -> str:
    """SQLAlchemy URLs name the driver: with SQLAlchemy 2.0 a bare postgresql:// means psycopg2."""
    return f"{driver}://" + PG.split("://", 1)[1].rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory):
    try:
        _pg("SELECT 1")
    except Exception as exc:
        pytest.skip(f"no PostgreSQL reachable at {PG}: {exc}")
    root = tmp_path_factory.mktemp("team")
    suffix = secrets.token_hex(4)
    dbs = {role: f"lmloop_{role}_{suffix}" for role in ("mlflow", "auth", "prefect", "locks")}
    for db in dbs.values():
        _pg(f"CREATE DATABASE {db}")
    (root / "basic_auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {_url(dbs['auth'])}\nadmin_username = {ADMIN}\nadmin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    mlflow_port, prefect_port = free_port(), free_port()
    server_env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini")}
    server_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
    server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # as the README's server
    mlflow_cmd = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri", _url(dbs["mlflow"])]
    mlflow_cmd += ["--serve-artifacts", "--artifacts-destination", (root / "artifacts").as_uri()]
    mlflow_cmd += ["--host", "127.0.0.1", "--port", str(mlflow_port)]
    prefect_env = {**os.environ, "PREFECT_HOME": str(root / "prefect-server")}
    prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"] = _url(dbs["prefect"], "postgresql+asyncpg")
    prefect_env["PREFECT_SERVER_API_AUTH_STRING"] = PREFECT_AUTH
    prefect_env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    prefect_cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)]
    servers = [
        start(mlflow_cmd, root / "mlflow.log", server_env),
        start(prefect_cmd, root / "prefect.log", prefect_env),
    ]
    client_env = {
        "LMLOOP_HOME": str(root / "home"),
        "PREFECT_HOME": str(root / "prefect-client"),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_API_AUTH_STRING": PREFECT_AUTH,
        "LMLOOP_LOCK_URL": _url(dbs["locks"], "postgresql"),
    }
    try:
        wait_http(f"http://127.0.0.1:{mlflow_port}/health", 120, servers[0])
        wait_http(f"http://127.0.0.1:{prefect_port}/api/health", 120, servers[1])
        inherited = {k: v for k, v in os.environ.items() if k not in MLFLOW_URIS}  # what MLflow exported here
        yield {"root": root, "env": {**inherited, **client_env}, "dbs": dbs, **client_env}
    finally:
        for server in servers:
            stop(server)
        for db in dbs.values():
            _pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _lmloop(team: dict, *args: str, timeout: int = 600) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *args, "--json"],
        env=team["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sets() -> list[str]:
    sets = [*TINY_OVERRIDES, f"registry.model_name={NAME}", "train.max_steps=120", "train.log_every=20"]
    sets += ["finetune.max_steps=60", "finetune.batch_size=16", "finetune.log_every=20", "finetune.learning_rate=3e-4"]
    sets += ["continual.tolerance=0.05", "continual.bootstrap_samples=300", "eval.samples=0"]
    return [a for s in sets for a in ("--set", s)]


def _prefect_api(team: dict, path: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        f"{team['PREFECT_API_URL']}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(PREFECT_AUTH.encode()).decode(),
        },
    )
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_servers_refuse_requests_without_credentials(team: dict) -> None:
    requests = [
        urllib.request.Request(f"{team['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"),
        urllib.request.Request(
            f"{team['PREFECT_API_URL']}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
        ),
    ]
    for request in requests:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 401, request.full_url


def test_training_registers_a_champion_in_postgres_with_proxied_artifacts(team: dict) -> None:
    data = team["root"] / "data-a"
    write_corpus(data, seed=0, docs=900, files=2)
    out = _lmloop(team, "run", "--data", str(data), *_sets())
    assert out["model_version"] == "1" and out["aliases"] == ["champion"]
    rows = _pg("SELECT name, alias, version FROM registered_model_aliases", team["dbs"]["mlflow"])
    assert (NAME, "champion", 1) in rows, "the registry lives in PostgreSQL"
    run = _pg(f"SELECT artifact_uri FROM runs WHERE run_uuid = '{out['run_id']}'", team["dbs"]["mlflow"])
    assert run[0][0].startswith("mlflow-artifacts:"), "artifacts go through the server (--serve-artifacts)"
    assert any((team["root"] / "artifacts").rglob("model.safetensors")), "and land in its artifact destination"
    status = _lmloop(team, "status", "--set", f"registry.model_name={NAME}")
    assert status["tracking_uri"] == team["MLFLOW_TRACKING_URI"] and status["aliases"]["champion"]["version"] == "1"
    runs = _prefect_api(team, "/flow_runs/filter", {})
    assert any(r["name"] and r["state_type"] == "COMPLETED" for r in runs), "the flow run is on the Prefect server"
    assert _pg("SELECT count(*) FROM flow_run", team["dbs"]["prefect"])[0][0] >= 1


def test_a_worker_runs_the_continual_deployment_and_promotes(team: dict) -> None:
    landing = team["root"] / "landing"
    write_corpus(landing, seed=7, shift=True, docs=400, files=1)
    _deploy = subprocess.run(
        [sys.executable, "-m", "cli", "deploy", "--pool", "team", "--cron", "0 0 1 1 *", *_sets()]
        + ["--set", f"continual.landing={landing}"],
        env=team["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert _deploy.returncode == 0, _deploy.stderr[-3000:]
    worker = start(
        [str(BIN / "prefect"), "worker", "start", "--pool", "team", "--limit", "1"],
        team["root"] / "worker.log",
        team["env"],
    )
    try:
        trigger = subprocess.run(
            [str(BIN / "prefect"), "deployment", "run", "continual/continual"],
            env=team["env"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trigger.returncode == 0, trigger.stderr
        deadline = time.monotonic() + 540
        final = None
        while time.monotonic() < deadline and final is None:
            runs = _prefect_api(team, "/flow_runs/filter", {"flows": {"name": {"any_": ["continual"]}}})
            done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
            final = done[0] if done else None
            time.sleep(2)
    finally:
        stop(worker)
    log = (team["root"] / "worker.log").read_text()[-4000:]
    assert final is not None and final["state_type"] == "COMPLETED", log
    status = _lmloop(team, "status", "--set", f"registry.model_name={NAME}")
    assert status["aliases"]["champion"]["version"] == "2", status["gate_decisions"]
    assert status["aliases"]["previous_champion"]["version"] == "1"
    rows = _pg("SELECT alias, version FROM registered_model_aliases", team["dbs"]["mlflow"])
    assert ("champion", 2) in rows


def test_the_promotion_lock_is_exclusive_across_processes(team: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two holders of the PostgreSQL advisory lock never overlap (threads here, other machines in a team)."""
    import threading

    from lmloop.core import settings
    from lmloop.data.state import State
    from lmloop.promotion.moves import exclusive

    monkeypatch.setenv("LMLOOP_LOCK_URL", team["LMLOOP_LOCK_URL"])
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with exclusive(f"champion:{NAME}", State(settings.home().state)):
            start_ = time.monotonic()
            time.sleep(0.5)
            spans.append((start_, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 3 and all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
