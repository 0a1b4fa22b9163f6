"""Data tasks: ingest -> validate (the gate) -> split; each takes the previous one's value."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from data_checks import data_docs, write_docs_index
from lmloop.core import settings
from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.core.values import Run
from lmloop.data import stages as data_stages
from lmloop.data.ingest import Unit, plan_ingest, process_unit
from lmloop.data.reports import FileReport
from lmloop.data.state import State
from lmloop.data.values import Corpus, Ingested
from lmloop.registry import tracking
from tasks.runners import map_units, runner_kind


@task(retries=1, retry_delay_seconds=1)
def ingest_unit(
    item: Unit, data: DataConfig, validation: ValidationConfig, cache: Path, docs: Path
) -> list[FileReport]:
    """One worker's share: read, clean and check one large file or a group of small ones into shards."""
    with data_docs(docs):
        return process_unit(item, data, validation, cache)


def _ingest(sources: list[str], data: DataConfig, validation: ValidationConfig, run: Run, out: Path) -> Ingested:
    """The files not cached yet, unit by unit on the configured task runner (in order, whatever ran them)."""
    shards, docs = run.home.cache / "shards", run.work / "data_docs"
    plan = plan_ingest(sources, data, validation, shards)
    kind = runner_kind(data, plan.pending_bytes)
    if plan.units:
        logger = get_run_logger()
        logger.info(
            "ingest: %d unit(s), %.1f MB not cached, runner %s", len(plan.units), plan.pending_bytes / 1e6, kind
        )
    done = map_units(ingest_unit, plan.units, kind, data, data=data, validation=validation, cache=shards, docs=docs)
    for i, reports in enumerate(done):
        plan.fill(i, reports)
    write_docs_index(docs)
    ingested = Ingested.write(out, plan.result())
    tracking.set_tags(run.run_id, {"lmloop.data.task_runner": kind})
    return ingested


@task
def ingest_data(sources: list[str], *, data: DataConfig, validation: ValidationConfig, run: Run) -> Ingested:
    """Read, clean and run the GX file suite on every raw file (cached by content hash), the per-file work
    mapped over ``data.task_runner``'s workers."""
    out = _ingest(sources, data, validation, run, run.work / "data")
    tracking.log_metrics(run.run_id, {f"ingest_{k}": v for k, v in out.counts().items()})
    return out


def _report(run: Run, folder: Path) -> None:
    for name in ("validation.md", "validation.json", "manifest.json"):
        if (folder / name).exists():
            tracking.log_artifact(run.run_id, folder / name, "data")
    docs = run.work / "data_docs"
    if docs.exists():  # GX's own pages, one per validation run (files already checked earlier are cached)
        tracking.log_artifact(run.run_id, docs, "data")  # a folder keeps its name: data/data_docs/
    if (folder / "validation.md").exists():
        experiment = tracking.client().get_run(run.run_id).info.experiment_id
        link = f"{settings.mlflow_ui_url()}/#/experiments/{experiment}/runs/{run.run_id}/artifacts/data/data_docs/index.html"
        text = (folder / "validation.md").read_text()
        text += f"\n\nGreat Expectations Data Docs of this run: [{link}]({link})\n" if docs.exists() else ""
        create_markdown_artifact(text, key="data-validation", description="lmloop data gate")


def _gate(ingested: Ingested, data: DataConfig, validation: ValidationConfig, run: Run) -> Corpus:
    """The data gate over ingested files, quarantining under this run and deduplicating against the state."""
    return data_stages.validate(
        ingested,
        data=data,
        validation=validation,
        quarantine=run.home.quarantine / run.run_id,
        state=State(run.home.state),
    )


@task
def prepare_test_set(sources: list[str], *, data: DataConfig, validation: ValidationConfig, run: Run) -> Corpus:
    """A team's own test file(s) through the same reading, cleaning and gate as the training data (its
    documents are then scored as they are, and kept out of training)."""
    ingested = _ingest(sources, data, validation, run, run.work / "test_data")
    corpus = _gate(ingested, data, validation, run)
    tracking.log_metrics(run.run_id, {"team_test_documents": corpus.validation["rows"]})
    tracking.log_dataset(
        run.run_id,
        "team-test",
        corpus.manifest_digest,
        sources[0],
        context="test",
        profile={"rows": corpus.validation["rows"], "sources": sources[:20]},
    )
    return corpus


@task
def validate_data(ingested: Ingested, *, data: DataConfig, validation: ValidationConfig, run: Run) -> Corpus:
    """The data gate; raises ``DataValidationError`` (never retried) when the data is rejected."""
    try:
        with data_docs(run.work / "data_docs"):
            corpus = _gate(ingested, data, validation, run)
    finally:
        _report(run, Path(ingested.dir))
    counts = (
        "rows",
        "files_rejected",
        "duplicates_removed",
        "already_trained_removed",
        "leakage_removed",
        "near_duplicates_removed",
        "near_leakage_removed",
    )
    tracking.log_metrics(run.run_id, {f"data_{k}": corpus.validation.get(k, 0) for k in counts})
    return corpus


def log_splits(corpus: Corpus, sources: list[str], run: Run, tokens: dict[str, int] | None = None) -> None:
    """Each split as an MLflow dataset input: schema, and a profile of rows, tokens (once known), sources."""
    for name, digest in corpus.digests.items():
        profile = {"rows": corpus.sizes[name], "files": corpus.validation.get("files"), "sources": sources[:20]}
        if tokens and f"{name}_text_tokens" in tokens:
            profile = {"rows": profile["rows"], "tokens": tokens[f"{name}_text_tokens"], **profile}
        tracking.log_dataset(run.run_id, name, digest, sources[0], context=name, profile=profile)


@task
def split_data(corpus: Corpus, *, data: DataConfig, sources: list[str], run: Run, log_datasets: bool = True) -> Corpus:
    """Train / validation / test by a hash of each document; each split is an MLflow dataset input (logged
    here, or by the packing stage with its token counts when ``log_datasets`` is False)."""
    out = corpus.with_splits(data.val_fraction, data.test_fraction)
    if log_datasets:
        log_splits(out, sources, run)
    tracking.log_metrics(run.run_id, {f"{name}_documents": n for name, n in out.sizes.items()})
    return out
