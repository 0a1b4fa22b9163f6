"""MLflow's model registry as lmloop uses it: register a trained model (the transformers flavor with its code
version and requirements, once per run and key), fetch a version (its files checked), and a model's versions,
descriptions and aliases."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from lmloop.core import settings
from lmloop.core.errors import NoModel
from lmloop.registry.tracking import absent, client


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
    *,
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

    from lmloop.training.model import CONSTRUCTING, load_pretrained

    identity = [run_id, str(model_dir), name, task]
    if "parent_version" in tags:  # a cycle re-planned from another champion trains (and registers) anew
        identity.append(str(tags["parent_version"]))
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    existing = _registered_with_key(name, run_id, key)
    if existing is not None:
        return existing
    auto = AutoModelForSequenceClassification if task == "text-classification" else AutoModelForCausalLM
    model = load_pretrained(auto, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    c = client()
    signature = None
    if task == "text-generation":  # generation settings a caller may pass per request (``params``)
        from mlflow.models import infer_signature

        params = {"max_new_tokens": 40, "do_sample": True, "top_k": 50, "temperature": 1.0}
        signature = infer_signature([input_example], ["generated text"], params=params)
    # MLflow loads the saved model back to check the input example: under the same lock as every load
    with mlflow.start_run(run_id=run_id, log_system_metrics=False), CONSTRUCTING:
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
    except MlflowException as exc:
        if absent(exc):
            return None
        raise  # a read error is not "not registered yet": registering again would make a second version
    found = [v for v in versions if v.tags.get("lmloop.registration_key") == key]
    return str(found[0].version) if found else None


def fetch_model(name: str, ref: str, dst: Path) -> dict[str, str]:
    """Download a registered model by alias (``champion``) or version (``3``): its model and tokenizer folders."""
    c = client()
    version = ref if ref.isdigit() else alias_version(name, ref)
    if version is None:
        raise NoModel(f"model {name!r} has no alias {ref!r}: train one first (lmloop run) or pass a version")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dst)))
    c.get_model_version(name, version)  # raises a clear MlflowException for an unknown version
    _check_model_files(local / "model", f"{name} v{version}")
    return {
        "model_dir": str(local / "model"),
        "tokenizer_dir": str(local / "components" / "tokenizer"),
        "version": version,
    }


def _check_model_files(folder: Path, what: str) -> None:
    """The downloaded model is whole: its config parses and every safetensors file's header covers the file
    (a truncated upload or a damaged artifact store fails here, named, not as a traceback deep in loading)."""
    from safetensors import safe_open

    from lmloop.core.errors import DamagedModel

    fix = "roll back to a good version (lmloop rollback --to V) or register the model again"
    try:
        json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DamagedModel(f"{what}: its config.json is missing or damaged ({exc}); {fix}") from exc
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise DamagedModel(f"{what}: no safetensors weights in the artifact store; {fix}")
    for path in weights:
        try:
            with safe_open(str(path), "pt") as f:
                f.keys()
        except Exception as exc:  # noqa: BLE001  (safetensors raises its own SafetensorError)
            raise DamagedModel(f"{what}: {path.name} is damaged ({exc}); {fix}") from exc


def version_exists(name: str, version: str) -> bool:
    try:
        client().get_model_version(name, version)
    except MlflowException as exc:
        if absent(exc):
            return False
        raise
    return True


def describe_registered_model(name: str, description: str) -> None:
    """What the registered model is and how it is kept current (shown on its page in the UI)."""
    c = client()
    if c.get_registered_model(name).description != description:
        c.update_registered_model(name, description=description)


def describe_version(name: str, version: str, description: str) -> None:
    client().update_model_version(name, version, description=description)


def version_created(name: str, version: str) -> float:
    """When ``version`` was registered (seconds since the epoch)."""
    return client().get_model_version(name, version).creation_timestamp / 1000.0


def alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` points at; None only when the alias (or the model) does not exist."""
    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if absent(exc):
            return None
        raise


def model_aliases(name: str) -> dict[str, str]:
    """The aliases the registered model ``name`` has (alias -> version); empty when there is no such model."""
    try:
        return {alias: str(version) for alias, version in client().get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if absent(exc):
            return {}
        raise


def set_alias(name: str, alias: str, version: str) -> None:
    client().set_registered_model_alias(name, alias, version)


def aliases_of(name: str, version: str) -> list[str]:
    return sorted(client().get_model_version(name, version).aliases)
