"""Ingestion: raw files -> validated, cleaned Arrow shards -> one deduplicated corpus with hash splits.

Each raw file is read as a stream, cleaned, and checked by the Great Expectations file suite in
chunks; its accepted rows land in an Arrow shard whose name is the file's content hash plus the
settings that shaped it, so unchanged files are never read twice. The corpus is the shards
concatenated (memory-mapped) and filtered by index: exact duplicates across files and documents
of frozen eval sets are dropped. Raw files are only ever read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # imported where used: `datasets` takes a second, and the landing check needs none of it
    from datasets import Dataset

from lmloop import near_dups
from lmloop.cleaning import doc_id, normalize_text
from lmloop.config import DataConfig, ValidationConfig
from lmloop.readers import Columns, read_rows
from lmloop.sources import discover

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
    near_duplicates: int = 0  # rows dropped by the gate as near-copies (of the batch or of trained documents)

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


@dataclass
class FrozenEval:
    """The frozen eval sets' documents, cleaned exactly like training data: ids (exact leakage) and
    MinHash signatures (near-copies count as leakage too)."""

    ids: set[str]
    signatures: near_dups.Signatures


def frozen_eval(paths: list[str], data: DataConfig) -> FrozenEval:
    texts: list[str] = []
    files, _ = discover(paths) if paths else ([], [])  # configuration, not raw input: not confined to the roots
    cols = Columns(data.text_column, data.label_column, data.id_column)
    for source in files:
        texts += [
            normalize_text(t, data.nfc, data.clean_whitespace)
            for _, t, _, _ in read_rows(source, cols)
            if isinstance(t, str)
        ]
    store = near_dups.Signatures.of(texts if data.near_dup_threshold else [], data.near_dup_ngram)
    return FrozenEval({doc_id(t) for t in texts}, store)


def signature_path(shard: str | Path, ngram: int) -> Path:
    """The MinHash signatures of a shard's rows, beside it (written by the worker that wrote the shard)."""
    return Path(shard).with_suffix(f".minhash{ngram}.npy")


def _bands_path(target: Path) -> Path:
    return target.with_name(target.name.removesuffix(".npy") + ".bands.npy")


def _write_atomic(path: Path, write: Any) -> None:
    """``write(file)`` into a private temporary file beside ``path``, then one rename: readers see the whole
    file or none, and concurrent writers never share a temporary file."""
    from lmloop.files import private_tmp

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_tmp(path)
    try:
        with tmp.open("wb") as f:
            write(f)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_signatures(target: Path, sigs: np.ndarray, bands: np.ndarray) -> None:
    """``target`` (signatures) and its band keys beside it, each atomically; the band keys first, so a
    signatures file always has its bands."""
    _write_atomic(_bands_path(target), lambda f: np.save(f, bands))
    _write_atomic(target, lambda f: np.save(f, sigs))


def load_signatures(target: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(signatures, band keys)``, memory-mapped (an empty file cannot be mapped: read)."""

    def load(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r")
        except ValueError:
            return np.load(path)

    return load(target), load(_bands_path(target))


def write_signatures(shard: str | Path, texts: Any, ngram: int) -> None:
    """Signatures of ``texts`` (a shard's rows, in order) saved beside the shard."""
    sigs, shingles = near_dups.signatures(texts, ngram, counts=True)
    save_signatures(signature_path(shard, ngram), sigs, near_dups.band_keys(sigs, shingles))


def shard_signatures(shard: str, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """A shard's signatures and band keys, computed now when its worker did not (a shard cached earlier)."""
    path = signature_path(shard, ngram)
    if not path.exists() or not _bands_path(path).exists():
        write_signatures(shard, _column(shard, "text"), ngram)
    return load_signatures(path)


def shards_signatures(shards: list[str], ngram: int) -> near_dups.Signatures:
    """The signatures of every row of ``shards`` (in order), with the rows' texts at hand for exact checks."""
    parts = [shard_signatures(s, ngram) for s in shards]
    starts = np.cumsum([0] + [len(sigs) for sigs, _ in parts])

    def texts(index: np.ndarray) -> list[str]:
        out: list[str] = [""] * len(index)
        part = np.searchsorted(starts, index, side="right") - 1
        for p in np.flatnonzero(np.bincount(part, minlength=len(shards))):
            mine = np.flatnonzero(part == p)
            values = _column(shards[p], "text").take(pa.array(index[mine] - starts[p])).to_pylist()
            for i, value in zip(mine.tolist(), values, strict=True):
                out[i] = value
        return out

    return near_dups.Signatures(parts, texts, ngram)


def _column(shard: str, name: str) -> pa.ChunkedArray:
    """One column of an Arrow shard, read with pyarrow (not row by row through ``datasets``)."""
    with pa.memory_map(shard) as source:
        return pa.ipc.open_stream(source).read_all().column(name)


_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def doc_ids(shards: list[str]) -> np.ndarray:
    """The uint64 document ids of every row of ``shards``, in order: the 16-hex-digit ``doc_id`` strings
    decoded in bulk from the Arrow buffer."""
    parts = []
    for shard in shards:
        column = _column(shard, "doc_id").combine_chunks()
        offsets = np.frombuffer(column.buffers()[1], np.int32, len(column) + 1, column.offset * 4)
        if len(column) and column.null_count == 0 and (np.diff(offsets) == 16).all():
            digits = _HEX[np.frombuffer(column.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]].reshape(-1, 16)
            packed = (digits[:, 0::2] << 4) | digits[:, 1::2]
            parts.append(np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64))
        else:
            parts.append(id_array(column.to_pylist()))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def id_array(doc_ids: Iterable[str]) -> np.ndarray:
    """16-hex-digit document ids as uint64: 8 bytes a document, so dedup stays small at any corpus size."""
    return np.frombuffer(bytes.fromhex("".join(doc_ids)), dtype=">u8").astype(np.uint64)


@dataclass
class History:
    """What earlier models trained on: sorted uint64 document ids, and (near-duplicates) their signatures."""

    ids: np.ndarray
    signatures: near_dups.Signatures | None = None

    @property
    def key(self) -> str:
        """What the history holds, for caches of decisions made against it."""
        digest = hashlib.sha256(np.ascontiguousarray(self.ids).tobytes())
        digest.update(str(len(self.signatures) if self.signatures is not None else -1).encode())
        return digest.hexdigest()


def select_documents(
    accepted: list[FileReport], frozen: FrozenEval, data: DataConfig, trained: History | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Indices (into the concatenated shards) of the first copy of each document that is neither in a
    frozen eval set nor already trained on (``trained``), exactly or (``data.near_dup_threshold``) nearly.

    Drops are charged to the file whose shard held the row: byte-identical files share one shard,
    so the rows' ``source`` column can't tell them apart. The decision is cached under the shards'
    cache by everything it depends on (shards, frozen eval ids, history, near-duplicate settings): a
    re-run on unchanged data recomputes nothing.
    """
    decision = _cached_decision(accepted, frozen, data, trained)
    by_file = {name: decision[name] for name in ("leaks", "dups", "near")}
    for i, (report, n_rows) in enumerate(zip(accepted, decision["rows"].tolist(), strict=True)):
        dropped = int(by_file["leaks"][i] + by_file["dups"][i] + by_file["near"][i])
        report.rows_rejected += dropped
        report.rows_accepted -= dropped
        report.near_duplicates = int(by_file["near"][i])
        if n_rows and by_file["leaks"][i] == n_rows:
            report.reject(f"leakage: all {n_rows} documents also appear (or nearly) in a frozen eval set")
    names = ("duplicates_removed", "already_trained_removed", "leakage_removed", "near_duplicates_removed")
    counts = dict(zip((*names, "near_leakage_removed"), decision["counts"].tolist(), strict=True))
    return decision["keep"].astype(np.int64), counts


def _cached_decision(
    accepted: list[FileReport], frozen: FrozenEval, data: DataConfig, trained: History | None
) -> dict[str, np.ndarray]:
    if not accepted:
        return _decide(accepted, frozen, data, trained)
    key = {
        "shards": [Path(r.shard).name for r in accepted],
        "frozen": hashlib.sha256("\n".join(sorted(frozen.ids)).encode()).hexdigest(),
        "near": [data.near_dup_threshold, data.near_dup_ngram],
        "history": trained.key if trained is not None else None,
        "version": 1,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(accepted[0].shard).parent.parent / "gate" / f"{digest}.npz"
    if path.exists():
        with np.load(path) as cached:
            return dict(cached)
    decision = _decide(accepted, frozen, data, trained)
    _write_atomic(path, lambda f: np.savez(f, **decision))
    return decision


def _decide(
    accepted: list[FileReport], frozen: FrozenEval, data: DataConfig, trained: History | None
) -> dict[str, np.ndarray]:
    parts = [doc_ids([r.shard]) for r in accepted]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    owner = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
    leaked = np.isin(ids, id_array(sorted(frozen.ids)))
    known = trained.ids if trained is not None else np.zeros(0, np.uint64)
    seen_before = np.isin(ids, known) & ~leaked if len(known) else np.zeros(len(ids), bool)
    _, first = np.unique(np.where(leaked, 0, ids), return_index=True)
    unique = np.zeros(len(ids), dtype=bool)
    unique[first] = True
    duplicate = ~leaked & (~unique | seen_before)
    near_leak, near = np.zeros(len(ids), bool), np.zeros(len(ids), bool)
    if data.near_dup_threshold and len(ids):
        sigs = shards_signatures([r.shard for r in accepted], data.near_dup_ngram)
        near_leak, near = _near(sigs, np.flatnonzero(~leaked & ~duplicate), frozen, trained, data.near_dup_threshold)
    leaked |= near_leak
    masks = {"leaks": leaked, "dups": duplicate, "near": near}
    return {
        "keep": np.flatnonzero(~leaked & ~duplicate & ~near),
        "rows": np.array([len(p) for p in parts], np.int64),
        **{name: np.bincount(owner[mask], minlength=len(parts)) for name, mask in masks.items()},
        "counts": np.array([duplicate.sum(), seen_before.sum(), leaked.sum(), near.sum(), near_leak.sum()], np.int64),
    }


def _near(
    sigs: near_dups.Signatures, rows: np.ndarray, frozen: FrozenEval, trained: History | None, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(near_leak, near_duplicate)`` masks over ``sigs`` for the candidate ``rows``: near-copies of frozen
    eval documents, then of documents already trained on, then of an earlier row of this batch."""
    near_leak = near_dups.against(sigs, frozen.signatures, threshold, rows)
    rows = rows[~near_leak[rows]]
    near = np.zeros(len(sigs), bool)
    if trained is not None and trained.signatures is not None:
        near = near_dups.against(sigs, trained.signatures, threshold, rows)
        rows = rows[~near[rows]]
    return near_leak, near | near_dups.within(sigs, threshold, rows)


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
    from datasets import Dataset, concatenate_datasets

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
