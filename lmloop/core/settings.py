"""Where lmloop keeps its state, and the process environment it needs.

Nothing here runs at import time: entry points (CLI, tests, deployments) call
:func:`configure_environment` once, before Prefect or MLflow are imported.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Offline, no telemetry: no hub is reachable here and nothing should phone home.
_ENV_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a download bar in `lmloop generate` is noise
    # a tracking server that is down fails a call in seconds (3 retries, 1-2-4 s backoff), not minutes;
    # the Prefect task retries on top are the second, bounded layer
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # results Prefect persists (task caching, retries) are JSON, never pickle
    "PREFECT_RESULTS_DEFAULT_SERIALIZER": "json",
}


def lmloop_home() -> Path:
    """Root of everything lmloop writes: ``$LMLOOP_HOME`` or the project root."""
    home = os.environ.get("LMLOOP_HOME")
    return Path(home).expanduser().resolve() if home else PROJECT_ROOT


def mlruns_dir() -> Path:
    return lmloop_home() / "mlruns"


class Home(BaseModel):
    """The folders under one ``LMLOOP_HOME``. Resolved once at the edge (CLI, flow entry) with :func:`home`
    and passed down as a value: library functions take the folders they need as arguments."""

    model_config = ConfigDict(frozen=True)

    root: str
    # where a person opens the MLflow UI, for links in Prefect artifacts (never with a password: see mlflow_ui_url)
    mlflow_ui: str = "http://127.0.0.1:5000"

    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def work(self) -> Path:
        """Per-run stage outputs (dataset, tokenizer, blocks, checkpoints, model): ``work/<run-id>``."""
        return self.path / "work"

    @property
    def cache(self) -> Path:
        """Content-addressed shards and token ids, shared by every run under this home."""
        return self.path / "cache"

    @property
    def shards(self) -> Path:
        """Ingested files as Arrow shards, by content and settings (every run reads them)."""
        return self.cache / "shards"

    @property
    def tokens(self) -> Path:
        """Token ids of shards, by shard and tokenizer."""
        return self.cache / "tokens"

    @property
    def models(self) -> Path:
        """Registered models fetched to be used here (``lmloop generate``)."""
        return self.cache / "models"

    @property
    def run_index(self) -> Path:
        """Which MLflow run each command's key resumes (:mod:`lmloop.registry.runs`)."""
        return self.work / "index"

    @property
    def state(self) -> Path:
        """Durable records that outlive runs (:mod:`lmloop.data.state`)."""
        return self.path / "state"

    @property
    def landing(self) -> Path:
        """Where new data arrives for the continual cycle (``continual.landing`` overrides)."""
        return self.path / "landing"

    @property
    def quarantine(self) -> Path:
        return self.path / "quarantine"


def preset_dirs() -> list[Path]:
    """Where config presets are looked up: the home's ``configs/``, then the shipped ones."""
    return [lmloop_home() / "configs", PROJECT_ROOT / "configs"]


def home() -> Home:
    """The one place that resolves ``LMLOOP_HOME`` (and where its MLflow UI is)."""
    return Home(root=str(lmloop_home()), mlflow_ui=mlflow_ui_url())


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or the embedded sqlite store under ``mlruns/``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]+):[^\s@]+@")


def redact(text: str) -> str:
    """``text`` (a URL, or a message quoting URLs) with every URL's password replaced by ``***``
    (``http://user:***@host``): for what lmloop prints."""
    return _CREDENTIALS.sub(r"\1:***@", text)


_SECRET_WORDS = {"password", "passwd", "secret", "token", "credential", "credentials", "secrets"}
_SECRET_KEY = re.compile(r"storage_options|api_key|access_key", re.I)


def _secret_key(key: str) -> bool:
    """A key whose value is a secret: ``data.storage_options``, ``*api_key*``, or one with a word (between ``.``,
    ``_`` and ``-``) such as ``password``, ``secret`` or ``token`` (``hub.hf_token``; not ``tokenizer.vocab_size``
    or ``eval.max_new_tokens``)."""
    return bool(_SECRET_KEY.search(key)) or any(w in _SECRET_WORDS for w in re.split(r"[._\-]", key.lower()))


def redact_assignments(assignments: list[str]) -> list[str]:
    """``section.key=value`` overrides (``--set``, ``LMLOOP_*`` variables) as they may be shown: the value of a
    secret-named key (``data.storage_options``, ``*password*``, ``*token*``, ...) as ``***``, URLs redacted."""
    shown = []
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        shown.append(f"{key}=***" if sep and _secret_key(key) else redact(assignment))
    return shown


def mlflow_ui_url() -> str:
    """Where a person opens the MLflow UI: ``LMLOOP_MLFLOW_UI_URL``, the tracking server itself, or the
    address ``lmloop ui`` serves by default. Links in Prefect artifacts point here (never with a password:
    they are stored in Prefect's database)."""
    uri = tracking_uri()
    default = uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return redact(os.environ.get("LMLOOP_MLFLOW_UI_URL", default).rstrip("/"))


def artifact_root() -> str:
    return (mlruns_dir() / "artifacts").as_uri()


def lock_url() -> str | None:
    """``$LMLOOP_LOCK_URL``: a PostgreSQL URL for a promotion lock shared by a team's machines, or None (the
    sqlite lock under the home's state)."""
    return os.environ.get("LMLOOP_LOCK_URL") or None


@functools.cache  # once per process
def freeze_heap_at_exit() -> None:
    """At interpreter exit, after the exit handlers registered later (Prefect draining its queues, a
    temporary server stopped), freeze the heap so the interpreter's teardown collections skip it. A process
    that has loaded torch, Prefect, MLflow and Great Expectations holds about a million objects; walking them
    at exit took 3-5 s on 2 cores, paid by every command, every flow run a deployment starts, and every
    stop request out of its 10 s (``python benchmarks/cli_exit.py``). Entry points call it once, first."""
    atexit.register(gc.freeze)


def configure_environment() -> None:
    """Set offline/telemetry defaults and give Prefect a home under ``LMLOOP_HOME``.

    Existing values win, so a user can still point at a Prefect server or turn logging up.
    """
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if redact(tracking_uri()) != tracking_uri():  # MLflow prints "View run ... at: <the URI>", password and all
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    home = lmloop_home()
    os.environ.setdefault("PREFECT_HOME", str(home / ".prefect"))
    os.environ.setdefault("HF_DATASETS_CACHE", str(home / ".cache" / "datasets"))
    mlruns_dir().mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def environment(values: Mapping[str, str], restore: Iterable[str] = ()) -> Iterator[None]:
    """``values`` in this process's environment for the block. After it, those variables and the ones named
    in ``restore`` (which code in the block may set: MLflow exports the URIs it is pointed at) are what they
    were before, unset ones unset again."""
    before = {key: os.environ.get(key) for key in {*values, *restore}}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
