"""The data stages: raw files -> :class:`~lmloop.data.values.Ingested` -> :class:`~lmloop.data.values.Corpus`.

Values in, values out; every folder a stage reads or writes is an argument. Prefect tasks wrap these in a
few lines; nothing here knows about Prefect.
"""

from __future__ import annotations

from pathlib import Path

from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.data.gate import gate
from lmloop.data.planning import ingest_files
from lmloop.data.state import State
from lmloop.data.values import Corpus, Ingested


def ingest(sources: list[str], *, data: DataConfig, validation: ValidationConfig, shards: Path, out: Path) -> Ingested:
    """Read, clean and check every raw file (GX file suite) into content-addressed shards under ``shards``."""
    return Ingested.write(out, ingest_files(sources, data, validation, cache=shards))


def validate(
    ingested: Ingested,
    *,
    data: DataConfig,
    validation: ValidationConfig,
    quarantine: Path,
    state: State,
) -> Corpus:
    """The data gate over the ingested files' reports; raises ``DataValidationError`` when rejected.
    With ``data.dedup_against_trained``, documents some registered model trained on (``state``) are dropped."""
    trained = (
        state.trained(data.near_dup_ngram if data.near_dup_threshold else None) if data.dedup_against_trained else None
    )
    out = Path(ingested.dir)
    return gate(
        ingested.reports(), data=data, validation=validation, out=out, quarantine_dir=quarantine, trained=trained
    )
