"""Which ingested documents train: exact and near duplicates across files, leaks of frozen eval sets, and
documents a registered model already trained on (the trained-id store and its history).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmloop.core.config import DataConfig
from lmloop.core.files import private_tmp
from lmloop.data import near_dups
from lmloop.data.file_reports import FileReport, doc_ids, id_array
from lmloop.data.signatures import shards_signatures, write_atomic
from lmloop.data.splits import FrozenEval


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
    accepted: list[FileReport], frozen: FrozenEval, data: DataConfig, *, trained: History | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Indices (into the concatenated shards) of the first copy of each document that is neither in a
    frozen eval set nor already trained on (``trained``), exactly or (``data.near_dup_threshold``) nearly.

    Drops are charged to the file whose shard held the row: byte-identical files share one shard,
    so the rows' ``source`` column can't tell them apart. The decision is cached under the shards'
    cache by everything it depends on (shards, frozen eval ids, history, near-duplicate settings): a
    re-run on unchanged data recomputes nothing.
    """
    decision = _cached_decision(accepted, frozen, data, trained=trained)
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
    accepted: list[FileReport], frozen: FrozenEval, data: DataConfig, *, trained: History | None
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
    write_atomic(path, lambda f: np.savez(f, **decision))
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
        near_leak, near = _near(
            sigs, np.flatnonzero(~leaked & ~duplicate), frozen, trained=trained, threshold=data.near_dup_threshold
        )
    leaked |= near_leak
    masks = {"leaks": leaked, "dups": duplicate, "near": near}
    return {
        "keep": np.flatnonzero(~leaked & ~duplicate & ~near),
        "rows": np.array([len(p) for p in parts], np.int64),
        **{name: np.bincount(owner[mask], minlength=len(parts)) for name, mask in masks.items()},
        "counts": np.array([duplicate.sum(), seen_before.sum(), leaked.sum(), near.sum(), near_leak.sum()], np.int64),
    }


def _near(
    sigs: near_dups.Signatures, rows: np.ndarray, frozen: FrozenEval, *, trained: History | None, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(near_leak, near_duplicate)`` masks over ``sigs`` for the candidate ``rows``: near-copies of frozen
    eval documents, then of documents already trained on, then of an earlier row of this batch."""
    near_leak = near_dups.against(sigs, frozen.signatures, threshold, rows=rows)
    rows = rows[~near_leak[rows]]
    near = np.zeros(len(sigs), bool)
    if trained is not None and trained.signatures is not None:
        near = near_dups.against(sigs, trained.signatures, threshold, rows=rows)
        rows = rows[~near[rows]]
    return near_leak, near | near_dups.within(sigs, threshold, rows)


def trained_ids(store: Path) -> np.ndarray:
    """Sorted uint64 ids of every document a registered model trained on (empty when none yet)."""
    return np.load(store) if store.exists() else np.zeros(0, np.uint64)


def record_trained(store: Path, ids: np.ndarray) -> int:
    """Add ``ids`` to the store (atomic replace through a temporary name no other writer uses; the caller
    holds the state lock, so no update is lost); returns its new size."""
    merged = np.union1d(trained_ids(store), ids.astype(np.uint64))
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_tmp(store)
    with tmp.open("wb") as f:
        np.save(f, merged)
    tmp.replace(store)
    return len(merged)
