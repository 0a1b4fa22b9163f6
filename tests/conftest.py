"""Test setup: every test process (each pytest-xdist worker) gets its own LMLOOP_HOME (MLflow sqlite, Prefect home,
work dirs, datasets cache)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Prefect or MLflow: a private home, offline, no telemetry.
_HOME = Path(tempfile.mkdtemp(prefix="lmloop-tests-"))
os.environ["LMLOOP_HOME"] = str(_HOME)
# MLflow exports the store it was last pointed at to this process's environment, both URIs
# (``set_tracking_uri``, ``set_registry_uri``), and child processes inherit them: a ``models:/`` name
# resolves in the registry's store. Tests that start children drop or set both.
MLFLOW_URIS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
for _key in (*MLFLOW_URIS, "PREFECT_API_URL"):
    os.environ.pop(_key, None)
os.environ["PREFECT_HOME"] = str(_HOME / ".prefect")
os.environ["HF_DATASETS_CACHE"] = str(_HOME / ".cache" / "datasets")  # not the pytest-xdist controller's
# pytest-xdist runs one worker per core: each worker, and the flows it starts, gets its share of the cores
# (torch and lmloop's training both read OMP_NUM_THREADS), not every core in each of them at once.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

from lmloop.core.settings import configure_environment, environment  # noqa: E402

configure_environment()

import pytest  # noqa: E402

from lmloop.core.config import PipelineConfig  # noqa: E402
from lmloop.core.presets import load_config  # noqa: E402
from lmloop.data.sample_data import write_corpus  # noqa: E402

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse-modules",
        action="store_true",
        help="Run the modules in reverse order (slow ones still first, each module's tests still together and "
        "in order): a test that passes only after, or before, another module's tests shows up.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow end-to-end modules first, each module's tests together and in order: ``make test`` runs the
    modules on pytest-xdist workers, and a worker should end on short unit tests, not on a long end-to-end
    test started last while the other worker sits idle."""
    modules = list(dict.fromkeys(item.module for item in items))
    if config.getoption("reverse_modules"):
        modules.reverse()
    slow = {item.module for item in items if item.get_closest_marker("slow")}
    rank = {module: (module not in slow, i) for i, module in enumerate(modules)}
    items.sort(key=lambda item: rank[item.module])


@contextlib.contextmanager
def mlflow_store(uri: str | None = None) -> Iterator[None]:
    """In the block, this process's MLflow URIs are ``uri`` (or stay as they are); after it, both are what
    they were before, whatever MLflow exported in between."""
    with environment({} if uri is None else dict.fromkeys(MLFLOW_URIS, uri), restore=MLFLOW_URIS):
        yield


def store_client(store: str | Path):
    """An MLflow client of one store, tracking and registry both, never the process-wide default: a URI,
    or a home (its embedded sqlite store)."""
    from mlflow import MlflowClient

    uri = store if isinstance(store, str) else f"sqlite:///{store / 'mlruns' / 'mlflow.db'}"
    return MlflowClient(uri, uri)


@pytest.fixture(autouse=True)
def _tracking_store_stays_put():
    """A test that points this process at another home's store must not leave the next test of this
    process (in another order, on another pytest-xdist worker) reading, registering or serving there."""
    with mlflow_store():
        yield


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
    from lmloop.ops.servers import free_port, prefect_server_command, start, stop, wait_http

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
    from lmloop.core import settings

    out = training_flow(config=tiny_config, data=[str(corpus)], run_name="flow-test")
    return {**out.model_dump(), "tracking_uri": settings.tracking_uri()}  # the store it was registered in


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in a temporary folder, the hub offline (as lmloop runs by default): the
    hub-id code path of a real download, with nothing fetched (``tests.pretrained.hub_cache`` fills it)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache
