"""Serving the champion: ``mlflow models serve -m models:/NAME@champion --env-manager local`` answers a
real HTTP request with generated text."""

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from lmloop.ops.servers import free_port, start, stop, wait_http
from tests.conftest import MLFLOW_URIS

pytestmark = pytest.mark.slow


def test_mlflow_models_serve_answers_with_generated_text(trained: dict, tmp_path: Path) -> None:
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    # ``models:/`` resolves in the registry's store: both URIs, not the one this process exported last
    env = {
        **os.environ,
        **dict.fromkeys(MLFLOW_URIS, trained["tracking_uri"]),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    uri = f"models:/{trained['model_name']}@champion"
    command = [f"{bin_dir}/mlflow", "models", "serve", "-m", uri, "--env-manager", "local"]
    server = start([*command, "-h", "127.0.0.1", "-p", str(port)], tmp_path / "serve.log", env)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=180, process=server)
        body = {"inputs": ["Tire stezoubi"], "params": {"max_new_tokens": 12, "do_sample": False}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        predictions = json.loads(urllib.request.urlopen(request, timeout=60).read())["predictions"]
    finally:
        stop(server)
    log = (tmp_path / "serve.log").read_text()
    assert len(predictions) == 1 and predictions[0].startswith("Tire stezoubi"), predictions
    assert len(predictions[0]) > len("Tire stezoubi"), "generated text follows the prompt"
    assert "Ignoring provided params" not in log, "the signature declares the generation params"
