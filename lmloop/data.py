"""Ingestion: raw files -> validated, cleaned Arrow shards -> one deduplicated corpus with hash splits.

Each raw file is read as a stream, cleaned, and checked by the Great Expectations file suite in
chunks; its accepted rows land in an Arrow shard whose name is the file's content hash plus the
settings that shaped it, so unchanged files are never read twice. The corpus is the shards
concatenated (memory-mapped) and filtered by index: exact duplicates across files and documents
of frozen eval sets are dropped. Raw files are only ever read.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, concatenate_datasets

from data_checks import validate_frame
from lmloop.cleaning import bad_char_share, doc_id, normalize_text
from lmloop.config import DataConfig, ValidationConfig
from lmloop.files import private_tmp, write_text_atomic
from lmloop.readers import Columns, ReadError, read_rows
from lmloop.sources import SourceFile, discover

CHUNK_ROWS = 50_000
SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.string()),
        ("source", pa.string()),
        ("line", pa.int64()),
        ("doc_id", pa.string()),
        ("record_id", pa.string()),
    ]
)
_HASH_CHUNK = 1 << 20
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc (macOS, musl): the allocator manages on its own
    _LIBC = None


@dataclass
class FileReport:
    """What happened to one raw file (the manifest entry)."""

    uri: str
    sha256: str = ""
    size: int = 0
    format: str = ""
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    status: str = "accepted"  # accepted | rejected (quarantined) | skipped (not a data file)
    reasons: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    shard: str | None = None

    def reject(self, reason: str) -> None:
        self.status = "rejected"
        self.reasons.append(reason)
        self.rows_rejected, self.rows_accepted = self.rows_read, 0


def sha256_uri(uri: str) -> tuple[str, int]:
    """Content hash and size of a raw file; a saved-dataset folder hashes its files in name order."""
    digest, size = hashlib.sha256(), 0
    local = Path(uri)
    parts = sorted(p for p in local.rglob("*") if p.is_file()) if "://" not in uri and local.is_dir() else [uri]
    for part in parts:
        with fsspec.open(str(part), "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return digest.hexdigest(), size


def settings_key(data: DataConfig, validation: ValidationConfig) -> str:
    """Everything that changes a shard besides the raw bytes."""
    shaping = {
        "columns": [data.text_column, data.label_column, data.id_column],
        "clean": [data.nfc, data.clean_whitespace],
        "validation": validation.model_dump(exclude={"min_rows", "max_failed_file_share"}),
        "version": 1,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def to_frame(rows: list[tuple], source: SourceFile, data: DataConfig) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["line", "text", "label", "record_id"])
    frame["text"] = [
        normalize_text(t, data.nfc, data.clean_whitespace) if isinstance(t, str) else None for t in frame["text"]
    ]
    frame["source"] = source.uri
    frame["doc_id"] = [doc_id(t) if isinstance(t, str) else "" for t in frame["text"]]
    frame["bad_char_share"] = bad_char_share(frame["text"].fillna(""))
    return frame


def release_memory() -> None:
    """Hand freed heap back to the OS. glibc keeps arenas of many short-lived strings otherwise, and
    RSS creeps up file after file (measured: +30 MB per 20 MB file without this, flat with it)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _check_file(
    source: SourceFile, report: FileReport, data: DataConfig, validation: ValidationConfig, shard: Path
) -> None:
    """Stream one file through cleaning and the GX file suite into ``shard``."""
    cols = Columns(data.text_column, data.label_column, data.id_column)
    tmp = private_tmp(shard)  # two runs on the same file write their own copies; the last rename wins
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
            for rows in _chunks(read_rows(source, cols), CHUNK_ROWS):
                frame = to_frame(rows, source, data)
                result = validate_frame(frame, validation)
                report.rows_read += len(frame)
                if not result.success:
                    report.failures.extend(asdict(f) for f in result.failures)
                    report.reasons.extend(f.message() for f in result.failures)
                keep = frame[~frame["line"].isin(result.bad_lines) & frame["text"].notna()]
                report.rows_accepted += len(keep)
                writer.write_table(pa.Table.from_pandas(keep[SCHEMA.names], schema=SCHEMA, preserve_index=False))
                del frame, keep, result
                release_memory()
        report.rows_rejected = report.rows_read - report.rows_accepted
        if report.failures:
            report.status = "rejected"
        elif report.rows_read == 0:
            report.reject("empty: no documents in the file")
        if report.status == "accepted":
            tmp.replace(shard)
    finally:
        tmp.unlink(missing_ok=True)


def process_file(source: SourceFile, data: DataConfig, validation: ValidationConfig, cache: Path) -> FileReport:
    """Read, clean and validate one raw file, reusing the cached result for unchanged content."""
    sha, size = sha256_uri(source.uri)
    key = f"{sha[:32]}-{settings_key(data, validation)}"
    cached = cache / f"{key}.json"
    if cached.exists():
        report = FileReport(**json.loads(cached.read_text()))
        report.uri = source.uri
        return report
    cache.mkdir(parents=True, exist_ok=True)
    report = FileReport(uri=source.uri, sha256=sha, size=size, format=source.format)
    shard = cache / f"{key}.arrow"
    try:
        _check_file(source, report, data, validation, shard)
    except ReadError as exc:
        report.reject(str(exc))
    if report.status == "accepted":
        report.shard = str(shard)
    write_text_atomic(cached, json.dumps(asdict(report)))
    return report


def apply_storage_options(data: DataConfig) -> None:
    """Hand ``data.storage_options`` (credentials) to fsspec as per-protocol defaults, in this process only."""
    import fsspec.config

    for protocol, options in data.storage_options.items():
        fsspec.config.conf.setdefault(protocol, {}).update({k: v.get_secret_value() for k, v in options.items()})


def ingest_files(sources: list[str], data: DataConfig, validation: ValidationConfig, cache: Path) -> list[FileReport]:
    """A report per raw file; files refused for path safety are reported as rejected, unread, and paths that
    are not data files (hidden, unsupported, symlinked folders) as skipped, with the reason."""
    apply_storage_options(data)
    files, refused = discover(sources, data.roots)
    reports = [
        FileReport(uri=r.uri, status="skipped" if r.skipped else "rejected", reasons=[r.reason]) for r in refused
    ]
    return reports + [process_file(f, data, validation, cache) for f in files]


def frozen_eval_ids(paths: list[str], data: DataConfig) -> set[str]:
    """Document ids of the frozen eval sets, cleaned exactly like training data."""
    ids: set[str] = set()
    if not paths:
        return ids
    files, _ = discover(paths)  # configuration, not raw input: not confined to the data roots
    cols = Columns(data.text_column, data.label_column, data.id_column)
    for source in files:
        for _, text, _, _ in read_rows(source, cols):
            if isinstance(text, str):
                ids.add(doc_id(normalize_text(text, data.nfc, data.clean_whitespace)))
    return ids


def id_array(doc_ids: Iterable[str]) -> np.ndarray:
    """16-hex-digit document ids as uint64: 8 bytes a document, so dedup stays small at any corpus size."""
    return np.frombuffer(bytes.fromhex("".join(doc_ids)), dtype=">u8").astype(np.uint64)


def select_documents(
    accepted: list[FileReport], exclude: set[str], trained: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Indices (into the concatenated shards) of the first copy of each document that is neither in a
    frozen eval set (``exclude``) nor already trained on (``trained``, sorted uint64 ids).

    Drops are charged to the file whose shard held the row: byte-identical files share one shard,
    so the rows' ``source`` column can't tell them apart.
    """
    parts = [id_array(Dataset.from_file(r.shard)["doc_id"]) for r in accepted]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    owner = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
    leaked = np.isin(ids, id_array(sorted(exclude)))
    seen_before = np.isin(ids, trained) & ~leaked if trained is not None and len(trained) else np.zeros(len(ids), bool)
    _, first = np.unique(np.where(leaked, 0, ids), return_index=True)
    unique = np.zeros(len(ids), dtype=bool)
    unique[first] = True
    keep = np.flatnonzero(unique & ~leaked & ~seen_before)
    duplicate = ~leaked & (~unique | seen_before)
    leaks_by_file = np.bincount(owner[leaked], minlength=len(parts))
    dups_by_file = np.bincount(owner[duplicate], minlength=len(parts))
    for report, n_rows, leaks, dups in zip(accepted, map(len, parts), leaks_by_file, dups_by_file, strict=True):
        report.rows_rejected += int(leaks + dups)
        report.rows_accepted -= int(leaks + dups)
        if n_rows and leaks == n_rows:
            report.reject(f"leakage: all {n_rows} documents also appear in a frozen eval set")
    counts = {
        "duplicates_removed": int(duplicate.sum()),
        "already_trained_removed": int(seen_before.sum()),
        "leakage_removed": int(leaked.sum()),
    }
    return keep.astype(np.int64), counts


def trained_ids(store: Path) -> np.ndarray:
    """Sorted uint64 ids of every document a registered model trained on (empty when none yet)."""
    return np.load(store) if store.exists() else np.zeros(0, np.uint64)


def record_trained(store: Path, ids: np.ndarray) -> int:
    """Add ``ids`` to the store (atomic replace); returns its new size."""
    merged = np.union1d(trained_ids(store), ids.astype(np.uint64))
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.with_name(store.name + ".tmp.npy")
    np.save(tmp, merged)
    tmp.replace(store)
    return len(merged)


def load_shards(paths: list[str]) -> Dataset:
    return concatenate_datasets([Dataset.from_file(p) for p in paths]) if paths else Dataset.from_dict({})


def manifest_digest(reports: list[FileReport]) -> str:
    """Digest of the raw data used: sorted content hashes, so moving the folder keeps it stable."""
    hashes = sorted(r.sha256 for r in reports if r.status == "accepted")
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]


def split_of(doc: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split from the document's content hash: adding data never moves a document."""
    bucket = int(doc[:8], 16) / 0x1_0000_0000
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "validation"
    return "train"


def split_indices(ids: np.ndarray, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """The same rule as :func:`split_of`, vectorised over uint64 ids (top 32 bits = first 8 hex digits)."""
    buckets = (ids >> np.uint64(32)).astype(np.float64) / 0x1_0000_0000
    is_test = buckets < test_fraction
    is_val = ~is_test & (buckets < test_fraction + val_fraction)
    return {
        "train": np.flatnonzero(~is_test & ~is_val),
        "validation": np.flatnonzero(is_val),
        "test": np.flatnonzero(is_test),
    }
