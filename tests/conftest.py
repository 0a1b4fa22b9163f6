"""Test setup: every test session gets its own LMLOOP_HOME (MLflow sqlite, Prefect home, work dirs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports Prefect or MLflow: a private home, offline, no telemetry.
_HOME = Path(tempfile.mkdtemp(prefix="lmloop-tests-"))
os.environ["LMLOOP_HOME"] = str(_HOME)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_HOME"] = str(_HOME / ".prefect")

from lmloop.settings import configure_environment  # noqa: E402

configure_environment()

import pytest  # noqa: E402

from lmloop.config import PipelineConfig, load_config  # noqa: E402
from lmloop.sample_data import write_corpus  # noqa: E402

# A 2-layer, 64-wide model for a few steps: enough to see the loss fall in seconds.
TINY_OVERRIDES = [
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.block_size=64",
    "tokenizer.vocab_size=512",
    "train.max_steps=40",
    "train.warmup_steps=5",
    "train.batch_size=8",
    "train.log_every=10",
    "eval.samples=1",
    "eval.max_new_tokens=8",
]


@pytest.fixture(scope="session")
def lmloop_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, seed=0, docs=600, files=3)
    return out


@pytest.fixture(scope="session")
def tiny_config() -> PipelineConfig:
    return load_config("tiny", TINY_OVERRIDES)


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory):
    """One real Prefect server for the tests that run ``lmloop`` as a subprocess: each CLI call would
    otherwise start (and stop) its own temporary server, ~8 s apiece."""
    from lmloop.servers import free_port, prefect_server_command, start, stop, wait_http

    port = free_port()
    root = tmp_path_factory.mktemp("prefect-server")
    env = {**os.environ, "PREFECT_HOME": str(root), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = start(prefect_server_command("127.0.0.1", port), root / "server.log", env)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", 120, server)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop(server)


@pytest.fixture(scope="session")
def trained(prefect_harness, corpus: Path, tiny_config: PipelineConfig) -> dict:
    """One real training flow run, shared: later flows (fine-tuning, continual) start from its champion."""
    from flows.training import training_flow

    return training_flow(config=tiny_config, data=[str(corpus)], run_name="flow-test")
