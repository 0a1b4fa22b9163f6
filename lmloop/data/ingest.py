"""Ingestion: raw files -> cleaned, checked, content-addressed Arrow shards (one per file) and a report each.

A large file streams through cleaning and the Great Expectations file suite chunk by chunk (bounded
memory); small files are read one by one and checked together in one GX run (its per-run overhead
would otherwise dominate: ~50 ms a run against ~0.1 ms a row). Either way each file gets its own
shard and report, cached by content hash and settings.
"""

from __future__ import annotations

import ctypes
import gc
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import pandas as pd
import pyarrow as pa

from data_checks import ValidationReport, validate_files, validate_frame
from lmloop.core.config import DataConfig, ValidationConfig
from lmloop.core.faults import crash_point
from lmloop.core.files import intact, private_tmp, seal, write_text_atomic
from lmloop.core.stopping import check_pending
from lmloop.data.cleaning import bad_char_share, doc_id, normalize_text
from lmloop.data.file_reports import SCHEMA, FileReport, settings_key, sha256_uri
from lmloop.data.readers import Columns, ReadError, read_rows
from lmloop.data.signatures import write_signatures
from lmloop.data.sources import SourceFile

CHUNK_ROWS = 50_000
SMALL_FILE = 256 * 1024  # bytes: files up to this size are checked together
_GOES_ON = ": finished files are cached, a rerun goes on"  # what a stop request mid-ingest leaves
SMALL_GROUP = 500  # files per group (~1.5 s; a stop request ends a group at its next file, or after its GX run)
RELEASE_ROWS = 200_000  # rows between hand-backs of freed heap to the OS
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc (macOS, musl): the allocator manages on its own
    _LIBC = None
_since_release = 0


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def to_frame(rows: list[tuple], source: SourceFile | list[str], data: DataConfig) -> pd.DataFrame:
    """Cleaned rows with their document ids; ``source``: the file, or each row's file (many small files)."""
    frame = pd.DataFrame(rows, columns=["line", "text", "label", "record_id"])
    frame["text"] = [
        normalize_text(t, data.nfc, data.clean_whitespace) if isinstance(t, str) else None for t in frame["text"]
    ]
    frame["source"] = source if isinstance(source, list) else source.uri
    frame["doc_id"] = [doc_id(t) if isinstance(t, str) else "" for t in frame["text"]]
    frame["bad_char_share"] = bad_char_share(frame["text"].fillna(""))
    return frame


def release_memory(rows: int) -> None:
    """Hand freed heap back to the OS every ``RELEASE_ROWS`` rows processed. glibc keeps arenas of many
    short-lived strings otherwise, and RSS creeps up file after file (measured: +30 MB per 20 MB file
    without it, flat with it); a collection costs ~0.3 s, so never per small file."""
    global _since_release
    _since_release += rows
    if _since_release < RELEASE_ROWS:
        return
    _since_release = 0
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _shard(frames: list[pd.DataFrame], shard: Path) -> None:
    """Write the kept rows as one Arrow shard: a private temporary file, then an atomic rename (two runs on
    the same file write their own copies; the last rename wins)."""
    tmp = private_tmp(shard)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
            for frame in frames:
                writer.write_table(pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False))
        seal(tmp.replace(shard))
    finally:
        tmp.unlink(missing_ok=True)


def _apply(report: FileReport, frame: pd.DataFrame, result: ValidationReport) -> pd.DataFrame:
    """Count one checked frame into ``report``; returns the rows to keep."""
    report.rows_read += len(frame)
    if not result.success:
        report.failures.extend(asdict(f) for f in result.failures)
        report.reasons.extend(f.message() for f in result.failures)
    keep = frame[~frame["line"].isin(result.bad_lines) & frame["text"].notna()]
    report.rows_accepted += len(keep)
    return keep


def _finish(report: FileReport, kept: list[pd.DataFrame], shard: Path, *, data: DataConfig) -> None:
    report.rows_rejected = report.rows_read - report.rows_accepted
    if report.failures:
        report.status = "rejected"
    elif report.rows_read == 0:
        report.reject("empty: no documents in the file")
    if report.status == "accepted":
        _shard(kept, shard)
        crash_point("ingest-shard-written")
        if data.near_dup_threshold:  # the gate's near-duplicate search reads these instead of the texts
            texts = pa.chunked_array([pa.array(f["text"], pa.string()) for f in kept], pa.string())
            write_signatures(shard, texts, data.near_dup_ngram)
        report.shard = str(shard)


def _check_large(
    source: SourceFile, report: FileReport, data: DataConfig, *, validation: ValidationConfig, shard: Path
) -> None:
    """Stream one large file through cleaning and the GX file suite, chunk by chunk, into ``shard``."""
    cols = Columns(data.text_column, data.label_column, data.id_column)
    kept = []
    for rows in _chunks(read_rows(source, cols), CHUNK_ROWS):
        check_pending(f"reading {source.uri}{_GOES_ON}")
        frame = to_frame(rows, source, data)
        kept.append(_apply(report, frame, validate_frame(frame, validation)))
        del frame
        release_memory(len(rows))
    _finish(report, kept, shard, data=data)


class _Pending:
    """A file whose cached result was not found: its report, shard path and (small files) rows."""

    def __init__(
        self,
        source: SourceFile,
        data: DataConfig,
        validation: ValidationConfig,
        cache: Path,
        digest: tuple[str, int] | None = None,
    ) -> None:
        sha, size = digest or sha256_uri(source.uri)
        key = f"{sha[:32]}-{settings_key(data, validation)}"
        self.source, self.cached, self.shard = source, cache / f"{key}.json", cache / f"{key}.arrow"
        self.report = FileReport(uri=source.uri, sha256=sha, size=size, format=source.format)

    def from_cache(self) -> FileReport | None:
        if not self.cached.exists():
            return None
        report = FileReport(**json.loads(self.cached.read_text()))
        if report.shard and not intact(Path(report.shard)):  # truncated or damaged since: read the file again
            return None
        report.uri = self.source.uri
        return report

    def save(self) -> FileReport:
        write_text_atomic(self.cached, json.dumps(asdict(self.report)))
        return self.report


def process_file(
    source: SourceFile,
    data: DataConfig,
    validation: ValidationConfig,
    *,
    cache: Path,
    digest: tuple[str, int] | None = None,
) -> FileReport:
    """Read, clean and validate one raw file, reusing the cached result for unchanged content."""
    pending = _Pending(source, data, validation, cache, digest)
    if (done := pending.from_cache()) is not None:
        return done
    cache.mkdir(parents=True, exist_ok=True)
    try:
        _check_large(source, pending.report, data, validation=validation, shard=pending.shard)
    except ReadError as exc:
        pending.report.reject(str(exc))
    return pending.save()


def process_small_files(
    sources: list[SourceFile],
    data: DataConfig,
    validation: ValidationConfig,
    cache: Path,
    digests: list[tuple[str, int]] | None = None,
) -> list[FileReport]:
    """Many small files at once: each read and cleaned on its own, then all checked by one run of the GX file
    suite (one report per file, as if each had been checked alone), then one shard and report each."""
    cols = Columns(data.text_column, data.label_column, data.id_column)
    out: dict[int, FileReport] = {}
    todo: dict[int, _Pending] = {}
    rows: list[tuple] = []
    owners: list[str] = []
    cache.mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(sources):
        check_pending(f"reading small files{_GOES_ON}")
        pending = _Pending(source, data, validation, cache, digests[i] if digests else None)
        if (done := pending.from_cache()) is not None:
            out[i] = done
            continue
        try:
            mine = list(read_rows(source, cols))
        except ReadError as exc:
            pending.report.reject(str(exc))
            out[i] = pending.save()
            continue
        todo[i] = pending
        rows += mine
        owners += [source.uri] * len(mine)
    results, by_file = {}, {}
    if rows:  # cleaned and checked together: one pass and one GX run, not one per file
        check_pending(f"before checking small files{_GOES_ON}")
        frame = to_frame(rows, owners, data)
        results = validate_files(frame, validation)
        by_file = dict(tuple(frame.groupby("source", sort=False)))
    for i, pending in todo.items():
        check_pending(f"writing small files' shards{_GOES_ON}")  # each shard and report is written whole
        mine = by_file.get(pending.source.uri)
        kept = [_apply(pending.report, mine, results[pending.source.uri])] if mine is not None else []
        _finish(pending.report, kept, pending.shard, data=data)
        out[i] = pending.save()
    release_memory(len(rows))
    return [out[i] for i in range(len(sources))]
