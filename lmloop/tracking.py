"""The one module that talks to MLflow: runs, params, metrics, artifacts, dataset inputs, registry.

Every call names its run explicitly (``run_id``) instead of relying on MLflow's thread-local
"active run", because Prefect may run tasks on other threads. The tracking URI comes from
:mod:`lmloop.settings` at call time, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lmloop import settings

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
        return found.experiment_id
    if settings.tracking_uri().startswith(("http://", "https://", "databricks")):
        return c.create_experiment(name)
    return c.create_experiment(name, artifact_location=f"{settings.artifact_root()}/{name}")


def start_run(experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None) -> str:
    run = client().create_run(ensure_experiment(experiment), run_name=run_name, tags=tags or {})
    return run.info.run_id


def run_exists(run_id: str) -> bool:
    """Is ``run_id`` in the tracking store? (Not when the store was lost or replaced since.)"""
    try:
        client().get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
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


def log_metrics(run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
    client().log_batch(run_id, metrics=batch)


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


def log_dataset(run_id: str, name: str, digest: str, source: str, context: str) -> None:
    """Record a dataset input (name, digest, source) so the UI shows which data trained which model."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # file:// matches several generated local sources; any of them will do
        warnings.simplefilter("ignore", UserWarning)
        dataset_source = resolve_dataset_source(Path(source).resolve().as_uri())
    dataset = MetaDataset(dataset_source, name=name, digest=digest[:36])
    tag = InputTag(key="mlflow.data.context", value=context)
    client().log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[tag])])


def git_commit() -> str:
    """The lmloop checkout's commit (``unknown`` outside a git checkout): tagged on every version."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=settings.PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def pip_requirements() -> list[str]:
    """Explicit requirements: MLflow's inference would go looking for torchvision."""
    names = ("torch", "transformers", "tokenizers", "safetensors", "accelerate")
    return [f"{name}=={dist_version(name).split('+')[0]}" for name in names]


def register_transformers_model(
    run_id: str,
    model_dir: Path,
    name: str,
    tags: dict[str, Any],
    description: str,
    input_example: str,
    task: str = "text-generation",
) -> str:
    """Log the model (transformers flavor, with tokenizer) to the run, then register it. Returns the version.

    Registration is one ``create_model_version`` call carrying every tag and the description, so a
    version is either complete or absent (never half-registered), and it is idempotent: a retry after
    a lost response finds the version its first attempt created (tag ``lmloop.registration_key``)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    key = hashlib.sha256(json.dumps([run_id, str(model_dir), name, task]).encode()).hexdigest()[:16]
    existing = _registered_with_key(name, run_id, key)
    if existing is not None:
        return existing
    auto = AutoModelForSequenceClassification if task == "text-classification" else AutoModelForCausalLM
    model = auto.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    c = client()
    signature = None
    if task == "text-generation":  # generation settings a caller may pass per request (``params``)
        from mlflow.models import infer_signature

        params = {"max_new_tokens": 40, "do_sample": True, "top_k": 50, "temperature": 1.0}
        signature = infer_signature([input_example], ["generated text"], params=params)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task=task,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )
    try:
        c.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    all_tags = {"git_commit": git_commit(), **tags, "lmloop.registration_key": key}
    version = c.create_model_version(
        name,
        source=f"models:/{info.model_id}",
        run_id=run_id,
        tags={k: str(v) for k, v in all_tags.items()},
        description=description,
        model_id=info.model_id,
    )
    return str(version.version)


def _registered_with_key(name: str, run_id: str, key: str) -> str | None:
    try:
        versions = client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    found = [v for v in versions if v.tags.get("lmloop.registration_key") == key]
    return str(found[0].version) if found else None


def fetch_model(name: str, ref: str, dst: Path) -> dict[str, str]:
    """Download a registered model by alias (``champion``) or version (``3``): its model and tokenizer folders."""
    c = client()
    version = ref if ref.isdigit() else alias_version(name, ref)
    if version is None:
        raise ValueError(f"model {name!r} has no alias {ref!r}: train one first (lmloop run) or pass a version")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dst)))
    c.get_model_version(name, version)  # raises a clear MlflowException for an unknown version
    return {
        "model_dir": str(local / "model"),
        "tokenizer_dir": str(local / "components" / "tokenizer"),
        "version": version,
    }


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    client().set_registered_model_alias(name, alias, version)


def aliases_of(name: str, version: str) -> list[str]:
    return sorted(client().get_model_version(name, version).aliases)
