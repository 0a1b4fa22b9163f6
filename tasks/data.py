from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from lmloop import stages, tracking
from lmloop.config import DataConfig, ValidationConfig


@task
def ingest_data(sources: list[str], cfg: DataConfig, work: str, run_id: str) -> dict[str, Any]:
    out = stages.ingest_stage(sources, cfg, Path(work) / "data")
    tracking.log_artifact(run_id, Path(out["manifest"]), "data")
    tracking.log_dataset(run_id, "raw", out["digest"], sources[0], context="ingested")
    tracking.log_metrics(run_id, {"data_rows": out["rows"], "data_files": out["files"]})
    return out


@task
def validate_data(dataset: str, cfg: ValidationConfig, work: str, run_id: str) -> dict[str, Any]:
    """Great Expectations gate; raises ``DataValidationError`` (no retry) when the data is rejected."""
    out = Path(work) / "data"
    try:
        return stages.validate_stage(dataset, cfg, out)
    finally:
        report = out / "validation.md"
        if report.exists():
            tracking.log_artifact(run_id, report, "data")
            create_markdown_artifact(report.read_text(), key="data-validation", description="GX text suite")


@task
def split_data(dataset: str, cfg: DataConfig, work: str, run_id: str) -> dict[str, Any]:
    out = stages.split_stage(dataset, cfg, Path(work) / "data")
    tracking.log_metrics(run_id, {f"{name}_documents": n for name, n in out["sizes"].items()})
    return out
