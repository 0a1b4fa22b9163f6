"""MLflow's tracking as lmloop uses it: the store, experiments, runs, params, metrics, artifacts and dataset
inputs (the registry's versions and aliases are :mod:`lmloop.registry.model_registry`).

Every call names its run explicitly (``run_id``) instead of relying on MLflow's thread-local
"active run", because Prefect may run tasks on other threads. The tracking URI comes from
:mod:`lmloop.core.settings` at call time, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lmloop.core import settings

_PARAM_MAX = 6000


def tracking_uri() -> str:
    return settings.tracking_uri()


def client() -> MlflowClient:
    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(name: str) -> str:
    """The experiment's id, creating it when new: with the embedded store, artifacts go under
    ``mlruns/artifacts``; a tracking server decides for itself (``--serve-artifacts`` proxies them)."""
    c = client()
    found = c.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get(_KIND) != _MODEL_DEVELOPMENT:  # an experiment made before lmloop set it
            c.set_experiment_tag(found.experiment_id, _KIND, _MODEL_DEVELOPMENT)
        return found.experiment_id
    tags = {_KIND: _MODEL_DEVELOPMENT, "mlflow.note.content": _EXPERIMENT_NOTE}
    served = settings.tracking_uri().startswith(("http://", "https://", "databricks"))
    where = {} if served else {"artifact_location": f"{settings.artifact_root()}/{name}"}
    try:
        return c.create_experiment(name, tags=tags, **where)
    except MlflowException:
        found = c.get_experiment_by_name(name)  # another flow created it since we looked
        if found is None:
            raise
        return found.experiment_id


# MLflow 3's UI opens a GenAI experiment on traces; this kind opens it on its training runs.
_KIND, _MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
_EXPERIMENT_NOTE = (
    "lmloop's runs: `pretrain` (a model from scratch), `continual-<batch>` (one continual-learning cycle, with "
    "nested `train`, `evaluate` and `gate` runs), `finetune-<task>`. Each run's description links to its "
    "Prefect flow run; the registered model's versions carry their gate report."
)


def start_run(experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None) -> str:
    run = client().create_run(ensure_experiment(experiment), run_name=run_name, tags=tags or {})
    return run.info.run_id


def child_run(parent_id: str, stage: str) -> str:
    """A run nested under ``parent_id`` for one stage (the UI shows it under its parent); a rerun of the
    flow finds and reopens the one its earlier attempt started."""
    c = client()
    parent = c.get_run(parent_id)
    found = c.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and tags.`lmloop.stage` = '{stage}'",
        max_results=1,
    )
    if found:
        reopen_run(found[0].info.run_id)
        return found[0].info.run_id
    tags = {"mlflow.parentRunId": parent_id, "lmloop.stage": stage}
    tags |= {k: v for k, v in parent.data.tags.items() if k.startswith("lmloop.prefect")}
    return c.create_run(parent.info.experiment_id, run_name=stage, tags=tags).info.run_id


def metrics_with_stages(run_id: str) -> dict[str, float]:
    """A run's latest metrics, and those of its nested stage runs (a stage's own win)."""
    c = client()
    run = c.get_run(run_id)
    children = c.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    return {k: v for r in [run, *children] for k, v in r.data.metrics.items()}


def absent(exc: MlflowException) -> bool:
    """Does ``exc`` say the thing asked for does not exist (a run, a model, a version, an alias)? Only then
    does a read mean "none"; any other error (a proxy's 503, a timeout, a refused login) is raised, never
    taken for "no champion yet"."""
    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return True
    # the registry's stores say a missing alias or version with INVALID_PARAMETER_VALUE, "... not found"
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message.lower()


def run_exists(run_id: str) -> bool:
    """Is ``run_id`` in the tracking store? (Not when the store was lost or replaced since.)"""
    try:
        client().get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE" or absent(exc):
            return False
        raise
    return True


def reopen_run(run_id: str) -> None:
    """Mark an interrupted run as running again: a resumed flow keeps logging into the same run."""
    client().update_run(run_id, status="RUNNING")


def last_step(run_id: str, metric: str) -> int:
    """The highest step already logged for ``metric`` (0 when none): a resumed run logs only past it."""
    history = client().get_metric_history(run_id, metric)
    return max((m.step for m in history), default=0)


def step_logger(run_id: str, metric: str = "train_loss") -> Callable[[dict[str, float], int], None]:
    """Log training metrics by step, skipping steps a resumed run already logged."""
    already = last_step(run_id, metric)

    def log(metrics: dict[str, float], step: int) -> None:
        if step > already:
            log_metrics(run_id, metrics, step)

    return log


@contextmanager
def system_metrics(run_id: str, interval: float = 10.0) -> Iterator[None]:
    """MLflow system metrics (CPU, memory, GPU) for the run while the block runs."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    client()
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=True)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))


def log_params(run_id: str, params: dict[str, Any]) -> None:
    as_text = {k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in params.items()}
    client().log_batch(run_id, params=[Param(k, v[:_PARAM_MAX]) for k, v in as_text.items()])


_UNSAFE = re.compile(r"[^\w.\- :]")  # what MLflow refuses in one segment of a metric name


def metric_key(name: str) -> str:
    """``name`` as MLflow accepts it: each ``/`` segment keeps letters, digits, ``_ . - :`` and spaces, and a
    segment that had anything else (a file ``export (1).jsonl``, a label ``R&D``) gets the rest replaced and
    a short hash of the original, so two names never meet in one key. Unchanged when already valid."""
    segments = []
    for segment in name.split("/"):
        clean = _UNSAFE.sub("_", segment)
        if clean != segment or clean in ("", ".", ".."):
            clean = f"{clean.strip('.') or '_'}_{hashlib.sha256(segment.encode()).hexdigest()[:6]}"
        segments.append(clean)
    return "/".join(segments)


def log_metrics(run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    """Every key made valid for MLflow (:func:`metric_key`); the run's ``metric_names.json`` maps the changed
    ones back to the names lmloop's own reports use."""
    now = int(time.time() * 1000)
    keys = {k: metric_key(k) for k in metrics}
    batch = [Metric(keys[k], float(v), now, step or 0) for k, v in metrics.items()]
    client().log_batch(run_id, metrics=batch)
    if renamed := {key: name for name, key in keys.items() if key != name}:
        log_dict(run_id, renamed, f"metric_names/{hashlib.sha256(json.dumps(renamed).encode()).hexdigest()[:8]}.json")


def metric_history(run_id: str, keys: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """Each metric's (step, value) points, in step order (for plots)."""
    c = client()
    return {key: sorted((m.step, m.value) for m in c.get_metric_history(run_id, key)) for key in keys}


def set_tags(run_id: str, tags: dict[str, Any]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_tag(run_id, key, str(value))


def log_artifact(run_id: str, path: Path, artifact_path: str | None = None) -> None:
    client().log_artifact(run_id, str(path), artifact_path)


def log_dict(run_id: str, payload: dict | list, artifact_file: str) -> None:
    client().log_dict(run_id, payload, artifact_file)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    client().log_text(run_id, text, artifact_file)


def log_table(run_id: str, rows: list[dict[str, Any]], artifact_file: str) -> None:
    if rows:
        client().log_table(run_id, {k: [r[k] for r in rows] for k in rows[0]}, artifact_file)


# What every lmloop dataset holds, row by row (the corpus's Arrow columns); the UI's "Data details" shows it.
DATASET_COLUMNS = {"text": "document text", "label": "class label (optional)", "source": "raw file", "doc_id": "id"}


def log_dataset(
    run_id: str, name: str, digest: str, *, source: str, context: str, profile: dict[str, Any] | None = None
) -> None:
    """Record a dataset input (name, digest, source, schema, ``profile``: rows, tokens, sources) so the UI
    shows which data trained which model, and what it was."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import ColSpec, Schema

    class ProfiledDataset(MetaDataset):
        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(profile or {})}

    with warnings.catch_warnings():  # file:// matches several generated local sources; any of them will do
        warnings.simplefilter("ignore", UserWarning)
        dataset_source = resolve_dataset_source(Path(source).resolve().as_uri())
    schema = Schema([ColSpec("string", column, required=column == "text") for column in DATASET_COLUMNS])
    dataset = ProfiledDataset(dataset_source, name=name, digest=digest[:36], schema=schema)
    tag = InputTag(key="mlflow.data.context", value=context)
    inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=[tag])]
    for attempt in range(3):
        try:
            client().log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as e:
            # MLflow's store looks the dataset up, then inserts it, in one transaction: two runs logging the
            # same dataset at once (two cycles on one batch) both insert, and one fails on the unique key.
            # Its transaction rolled back, and the row now exists, so the same call again links to it.
            if attempt == 2 or not any(marker in str(e) for marker in _UNIQUE_VIOLATION):
                raise


# How sqlite, PostgreSQL and MySQL word a unique-key violation (what MLflow's stores pass on).
_UNIQUE_VIOLATION = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
