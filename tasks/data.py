"""Data tasks: ingest -> validate (the gate) -> split; each takes the previous one's value."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from lmloop import stages, tracking
from lmloop.config import DataConfig, ValidationConfig
from lmloop.contracts import Corpus, Ingested, Run
from lmloop.state import State


@task
def ingest_data(sources: list[str], *, data: DataConfig, validation: ValidationConfig, run: Run) -> Ingested:
    """Read, clean and run the GX file suite on every raw file (cached by content hash)."""
    out = stages.ingest(
        sources, data=data, validation=validation, shards=run.home.cache / "shards", out=run.work / "data"
    )
    tracking.log_metrics(run.run_id, {f"ingest_{k}": v for k, v in out.counts().items()})
    return out


def _report(run: Run, folder: Path) -> None:
    for name in ("validation.md", "validation.json", "manifest.json"):
        if (folder / name).exists():
            tracking.log_artifact(run.run_id, folder / name, "data")
    if (folder / "validation.md").exists():
        create_markdown_artifact(
            (folder / "validation.md").read_text(), key="data-validation", description="lmloop data gate"
        )


@task
def validate_data(ingested: Ingested, *, data: DataConfig, validation: ValidationConfig, run: Run) -> Corpus:
    """The data gate; raises ``DataValidationError`` (never retried) when the data is rejected."""
    try:
        corpus = stages.validate(
            ingested,
            data=data,
            validation=validation,
            quarantine=run.home.quarantine / run.run_id,
            state=State(run.home.state),
        )
    finally:
        _report(run, Path(ingested.dir))
    counts = ("rows", "files_rejected", "duplicates_removed", "already_trained_removed", "leakage_removed")
    tracking.log_metrics(run.run_id, {f"data_{k}": corpus.validation[k] for k in counts})
    return corpus


@task
def split_data(corpus: Corpus, *, data: DataConfig, sources: list[str], run: Run) -> Corpus:
    """Train / validation / test by a hash of each document; each split is an MLflow dataset input."""
    out = corpus.with_splits(data.val_fraction, data.test_fraction)
    for name, digest in out.digests.items():
        profile = {"rows": out.sizes[name], "files": corpus.validation.get("files"), "sources": sources[:20]}
        tracking.log_dataset(run.run_id, name, digest, sources[0], context=name, profile=profile)
    tracking.log_metrics(run.run_id, {f"{name}_documents": n for name, n in out.sizes.items()})
    return out
