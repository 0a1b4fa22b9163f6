"""Data tasks: ingest -> validate (the gate) -> split; each takes the previous one's value."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from data_checks import data_docs
from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.core.values import Run
from lmloop.data import report as told
from lmloop.data import stages as data_stages
from lmloop.data.state import State
from lmloop.data.values import Corpus, Ingested
from tasks.runners import ingest_on_runner
from tasks.tracking import reporter


@task
def ingest_data(sources: list[str], *, data: DataConfig, validation: ValidationConfig, run: Run) -> Ingested:
    """Read, clean and run the GX file suite on every raw file (cached by content hash), the per-file work
    mapped over ``data.task_runner``'s workers."""
    ingested, kind = ingest_on_runner(
        sources, data=data, validation=validation, shards=run.home.shards, docs=run.docs, out=run.work / "data"
    )
    report = reporter(run)
    report.tags({"lmloop.data.task_runner": kind})
    told.report_ingest(report, ingested)
    return ingested


@task
def prepare_test_set(sources: list[str], *, data: DataConfig, validation: ValidationConfig, run: Run) -> Corpus:
    """A team's own test file(s) through the same reading, cleaning and gate as the training data (its
    documents are then scored as they are, and kept out of training)."""
    ingested, _ = ingest_on_runner(
        sources, data=data, validation=validation, shards=run.home.shards, docs=run.docs, out=run.work / "test_data"
    )
    corpus = data_stages.validate(
        ingested, data=data, validation=validation, quarantine=run.quarantine, state=State(run.home.state)
    )
    told.report_test_set(reporter(run), corpus, sources)
    return corpus


@task
def validate_data(ingested: Ingested, *, data: DataConfig, validation: ValidationConfig, run: Run) -> Corpus:
    """The data gate, quarantining under this run and deduplicating against the state; raises
    ``DataValidationError`` (never retried) when the data is rejected. Reported either way."""
    report = reporter(run)
    try:
        with data_docs(run.docs):
            corpus = data_stages.validate(
                ingested, data=data, validation=validation, quarantine=run.quarantine, state=State(run.home.state)
            )
    finally:
        told.report_gate(report, Path(ingested.dir), run.docs)
    told.report_kept(report, corpus)
    return corpus


@task
def split_data(corpus: Corpus, *, data: DataConfig, sources: list[str], run: Run, log_datasets: bool = True) -> Corpus:
    """Train / validation / test by a hash of each document; each split is an MLflow dataset input (logged
    here, or by the packing stage with its token counts when ``log_datasets`` is False)."""
    out = corpus.with_splits(data.val_fraction, data.test_fraction)
    report = reporter(run)
    if log_datasets:
        told.report_splits(report, out, sources)
    report.metrics({f"{name}_documents": n for name, n in out.sizes.items()})
    return out
