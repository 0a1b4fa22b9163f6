"""The data room's values: :class:`Ingested` (every raw file's report) and :class:`Corpus` (the documents that
train and their splits). Each is the one owner of its on-disk layout: nothing else reads ``files.json``,
``corpus.json``, ``keep.npy`` or ``split-*.npy`` by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from lmloop.core.files import write_json
from lmloop.core.values import Value
from lmloop.data.file_reports import FileReport, doc_ids, load_shards
from lmloop.data.splits import split_indices

SPLITS = ("train", "validation", "test")


class Ingested(Value):
    """Every raw file read, cleaned and checked (one report each), in ``dir/files.json``."""

    dir: str
    files: int
    files_rejected: int
    rows_read: int
    bytes_read: int

    @classmethod
    def write(cls, out: Path, reports: list[FileReport]) -> Ingested:
        write_json(out / "files.json", [asdict(r) for r in reports])
        return cls(
            dir=str(out),
            files=len(reports),
            files_rejected=sum(r.status == "rejected" for r in reports),
            rows_read=sum(r.rows_read for r in reports),
            bytes_read=sum(r.size for r in reports),
        )

    def reports(self) -> list[FileReport]:
        return [FileReport(**r) for r in json.loads((Path(self.dir) / "files.json").read_text())]

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("files", "files_rejected", "rows_read", "bytes_read")}


class GateSummary(Value):
    """What the data gate decided about a batch: passed or not, the documents kept, the files read, rejected
    (with reasons) and skipped, the expectations that failed, and what dedup removed."""

    success: bool
    rows: int  # documents kept
    files: int  # files read
    files_rejected: int
    files_skipped: int = 0
    failed_expectations: list[str] = Field(default_factory=list)
    rejected_files: list[dict[str, Any]] = Field(default_factory=list)  # {file, reasons}
    skipped_files: list[dict[str, Any]] = Field(default_factory=list)  # {file, reason}
    corpus_failures: list[dict[str, Any]] = Field(default_factory=list)
    manifest_digest: str
    near_dup_ngram: int | None = None  # the shingle size near-duplicates were found with (None: off)
    duplicates_removed: int = 0
    already_trained_removed: int = 0
    leakage_removed: int = 0
    near_duplicates_removed: int = 0
    near_leakage_removed: int = 0


class Corpus(Value):
    """The documents the gate let through: Arrow shards plus index arrays (kept documents, then one per
    split), memory-mapped and filtered by index, never copied. ``validation`` is the gate's summary."""

    root: str
    validation: GateSummary | None = None
    sizes: dict[str, int] = Field(default_factory=dict, description="Documents per split, once split.")
    digests: dict[str, str] = Field(default_factory=dict, description="A digest of each split's document ids.")

    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def manifest_digest(self) -> str:
        return self.validation.manifest_digest if self.validation else ""

    def write_index(self, shards: list[str], keep: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "corpus.json", {"shards": shards})
        np.save(self.path / "keep.npy", keep)

    def shards(self) -> list[str]:
        return json.loads((self.path / "corpus.json").read_text())["shards"]

    def keep(self) -> np.ndarray:
        return np.load(self.path / "keep.npy")

    def load(self) -> Any:
        """Every kept document (``datasets.Dataset``: text, label, source, line, doc_id, ...)."""
        return load_shards(self.shards()).select(self.keep())

    def with_splits(self, val_fraction: float, test_fraction: float) -> Corpus:
        """Split by a hash of each document's content; writes the index arrays."""
        ids = doc_ids(self.shards())[self.keep()]
        splits = split_indices(ids, val_fraction, test_fraction)
        for name, idx in splits.items():
            np.save(self.path / f"split-{name}.npy", idx)
        sizes = {name: int(len(idx)) for name, idx in splits.items()}
        digests = {name: hashlib.sha256(ids[idx].tobytes()).hexdigest()[:16] for name, idx in splits.items()}
        return self.model_copy(update={"sizes": sizes, "digests": digests})

    def split_index(self, name: str) -> np.ndarray:
        return np.load(self.path / f"split-{name}.npy")

    def split(self, name: str) -> Any:
        return self.load().select(self.split_index(name))
