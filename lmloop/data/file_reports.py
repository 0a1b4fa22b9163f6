"""What ingestion writes per raw file: the Arrow shard schema, the file's report (read, kept, rejected and why),
content hashes, the settings key that names a shard, and fast readers of a shard's columns and document ids.
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


from lmloop.core.config import DataConfig, ValidationConfig

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


def shard_column(shard: str, name: str) -> pa.ChunkedArray:
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
        column = shard_column(shard, "doc_id").combine_chunks()
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


def load_shards(paths: list[str]) -> Dataset:
    from datasets import Dataset, concatenate_datasets

    return concatenate_datasets([Dataset.from_file(p) for p in paths]) if paths else Dataset.from_dict({})


def manifest_digest(reports: list[FileReport]) -> str:
    """Digest of the raw data used: sorted content hashes, so moving the folder keeps it stable."""
    hashes = sorted(r.sha256 for r in reports if r.status == "accepted")
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]
