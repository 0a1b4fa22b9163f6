from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from lmloop import stages, tracking
from lmloop.config import DataConfig, ValidationConfig


@task
def ingest_data(
    sources: list[str], data: DataConfig, validation: ValidationConfig, work: str, run_id: str
) -> dict[str, Any]:
    """Read, clean and run the GX file suite on every raw file (cached by content hash)."""
    out = stages.ingest_stage(sources, data, validation, Path(work) / "data")
    tracking.log_metrics(run_id, {f"ingest_{k}": v for k, v in out.items()})
    return out


@task
def validate_data(data: DataConfig, validation: ValidationConfig, work: str, run_id: str) -> dict[str, Any]:
    """The data gate; raises ``DataValidationError`` (never retried) when the data is rejected."""
    out = Path(work) / "data"
    try:
        summary = stages.gate_stage(data, validation, out, batch=run_id)
    finally:
        for name in ("validation.md", "validation.json", "manifest.json"):
            if (out / name).exists():
                tracking.log_artifact(run_id, out / name, "data")
        if (out / "validation.md").exists():
            create_markdown_artifact(
                (out / "validation.md").read_text(), key="data-validation", description="lmloop data gate"
            )
    counts = ("rows", "files_rejected", "duplicates_removed", "already_trained_removed", "leakage_removed")
    tracking.log_metrics(run_id, {f"data_{k}": summary[k] for k in counts})
    return summary


@task
def split_data(data_dir: str, data: DataConfig, sources: list[str], run_id: str) -> dict[str, Any]:
    out = stages.split_stage(data_dir, data)
    for name, digest in out["digests"].items():
        tracking.log_dataset(run_id, f"{name}", digest, sources[0], context=name)
    tracking.log_metrics(run_id, {f"{name}_documents": n for name, n in out["sizes"].items()})
    return out
