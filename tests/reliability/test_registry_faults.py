"""A registry that answers errors (a proxy's 503 for longer than MLflow's retries) is never read as "no
champion yet": ``first_champion`` (run by every ``lmloop run``) stops before anything moves. Only "the alias
does not exist" means no champion. A real MLflow server behind a real HTTP proxy on loopback."""

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from lmloop.data.state import State
from lmloop.ops.servers import free_port, stop
from lmloop.promotion.moves import first_champion
from lmloop.registry import model_registry
from tests.conftest import mlflow_store, store_client
from tests.reliability.test_tracking_down import _server

pytestmark = pytest.mark.slow


class FaultyProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; while ``failing`` is set, answers 503 to GET requests whose path contains it
    (reads fail, writes would go through: the case where a wrong "no alias" reading does harm)."""

    def __init__(self, port: int, upstream: str) -> None:
        super().__init__(("127.0.0.1", port), _Forward)
        self.upstream, self.failing, self.refused = upstream, None, 0


class _Forward(BaseHTTPRequestHandler):
    server: FaultyProxy

    def _forward(self) -> None:
        if self.command == "GET" and self.server.failing and self.server.failing in self.path:
            self.server.refused += 1
            self.send_response(503)
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(self.server.upstream + self.path, body, headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, payload, kind = answer.status, answer.read(), answer.headers.get("Content-Type")
        except urllib.error.HTTPError as error:
            status, payload, kind = error.code, error.read(), error.headers.get("Content-Type")
        self.send_response(status)
        self.send_header("Content-Type", kind or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyProxy]:
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    server = _server(root, port)
    faulty = FaultyProxy(free_port(), f"http://127.0.0.1:{port}")
    threading.Thread(target=faulty.serve_forever, daemon=True).start()
    client = store_client(f"http://127.0.0.1:{port}")
    run = client.create_run(client.create_experiment("registry-faults")).info.run_id
    for name, versions in (("crowned", 2), ("fresh", 1), ("fresh-too", 1)):
        client.create_registered_model(name)
        for _ in range(versions):
            client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias("crowned", "champion", "1")
    try:
        yield faulty
    finally:
        faulty.shutdown()
        stop(server)


@pytest.fixture
def via_proxy(proxy: FaultyProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyProxy]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the proxy outlasts MLflow's retries at once
    proxy.failing, proxy.refused = None, 0
    with mlflow_store(f"http://127.0.0.1:{proxy.server_address[1]}"):
        yield proxy


def _champion_upstream(proxy: FaultyProxy, name: str) -> str | None:
    aliases = store_client(proxy.upstream).get_registered_model(name).aliases
    return aliases.get("champion")


def test_a_registry_read_error_never_crowns_an_untested_model(via_proxy: FaultyProxy, tmp_path: Path) -> None:
    via_proxy.failing = "registered-models/alias"
    state = State(tmp_path / "state")
    with pytest.raises(MlflowException):
        first_champion("crowned", "2", state)
    with pytest.raises(MlflowException):
        first_champion("fresh-too", "1", state)  # no champion yet, but the registry did not say so
    assert via_proxy.refused >= 2
    assert _champion_upstream(via_proxy, "crowned") == "1" and _champion_upstream(via_proxy, "fresh-too") is None
    assert state.history() == [], "no champion move recorded"


def test_only_an_alias_that_does_not_exist_means_no_champion(via_proxy: FaultyProxy, tmp_path: Path) -> None:
    state = State(tmp_path / "state")
    assert (
        model_registry.alias_version("fresh", "champion") is None
        and model_registry.alias_version("crowned", "champion") == "1"
    )
    assert first_champion("fresh", "1", state) is True and _champion_upstream(via_proxy, "fresh") == "1"
    assert first_champion("crowned", "2", state) is False and _champion_upstream(via_proxy, "crowned") == "1"
