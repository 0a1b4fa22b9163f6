"""Durable state that outlives runs, under one root (``LMLOOP_HOME/state``, passed in, never looked up):

- ``watermark.json``: content hashes of every landing file a continual cycle has consumed (trained on, or
  rejected by the data gate, with the reason);
- ``deferred.json``: landing files the retraining policy deferred (no drift, not enough data yet): not
  consumed, trained with the next batch that triggers;
- ``monitor/``: figures the drift measures keep between cycles (the champion's fit on its reference slices);
- ``trained_doc_ids.npy``: ids of every document a registered model trained on (dedup);
- ``trained_minhash/<name>.n<ngram>.npy``: their MinHash signatures, one file per model or batch (near-dups);
- ``eval_slices/<name>.jsonl``: frozen eval slices — the test split of the first training and of every
  later batch; challenger and champion are always judged on all of them;
- ``corpora.json``: the corpus folders models trained on, for replay samples;
- ``gate_history.jsonl``: every champion move (first champion, gate decision, rollback);
- ``cycles/<batch>.json``: what a continual cycle has done (its decision, the champion move, closed), so a
  rerun after a crash completes the cycle exactly once;
- ``locks.db``: the sqlite promotion lock (:mod:`lmloop.promotion.moves`).

This module is the only reader and writer of these files.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from lmloop.core import locks
from lmloop.core.files import write_text_atomic
from lmloop.data.dedup import History, record_trained, trained_ids
from lmloop.data.file_reports import doc_ids
from lmloop.data.near_dups import Signatures
from lmloop.data.signatures import load_signatures, save_signatures, shard_signatures
from lmloop.data.values import Corpus


def _read(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _write(path: Path, payload: Any) -> None:
    """Atomically: a reader sees the old file or the new one, never half of it."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=str))


class State:
    """The state folder's records; ``root`` is the folder itself."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def locked(self) -> AbstractContextManager[None]:
        """The state lock: every read-modify-write of a record shared by cycles (the watermark, the trained
        ids, the replay corpora) happens under it, so two ``lmloop continual`` commands, or a scheduled run and
        a manual one, never lose each other's update. PostgreSQL with ``LMLOOP_LOCK_URL`` (a team's machines);
        else a sqlite file of its own beside the promotion lock's (the two never nest)."""
        return locks.exclusive(f"state:{self.root.name}", self.root / "state_lock.db")

    # -- continual: what landed and was consumed
    def watermark(self) -> dict[str, dict[str, str]]:
        return _read(self.root / "watermark.json", {})

    def advance_watermark(self, files: list[dict[str, str]], batch: str) -> None:
        with self.locked():
            consumed = {f["sha256"]: {"uri": f["uri"], "batch": batch} for f in files}
            _write(self.root / "watermark.json", self.watermark() | consumed)
            self._undefer(consumed)

    def reject_files(self, files: list[dict[str, str]], batch: str, reasons: dict[str, str]) -> None:
        """Landing files the data gate rejected (``reasons`` by file hash): consumed as rejected, so no later
        cycle reads them again or counts them against its batch. The quarantine keeps their copies."""
        rejected = {f["sha256"]: {"uri": f["uri"], "batch": batch, "rejected": reasons[f["sha256"]]} for f in files}
        with self.locked():
            _write(self.root / "watermark.json", self.watermark() | rejected)
            self._undefer(rejected)

    # -- continual: what the retraining policy deferred
    def deferred(self) -> dict[str, dict[str, Any]]:
        """Deferred landing files by content hash: ``uri``, ``staged`` (the copy a cycle reads), ``batch``."""
        return _read(self.root / "deferred.json", {})

    def defer_files(self, files: list[dict[str, str]], batch: str) -> None:
        """``files`` wait for a batch that triggers retraining; they are not consumed (no watermark)."""
        entries = {f["sha256"]: {"uri": f["uri"], "staged": f["staged"], "batch": batch} for f in files}
        with self.locked():
            _write(self.root / "deferred.json", self.deferred() | entries)

    def _undefer(self, consumed: dict[str, Any]) -> None:
        waiting = self.deferred()
        if any(sha in waiting for sha in consumed):
            _write(self.root / "deferred.json", {k: v for k, v in waiting.items() if k not in consumed})

    # -- documents already trained on
    @property
    def trained_store(self) -> Path:
        return self.root / "trained_doc_ids.npy"

    def trained_ids(self) -> np.ndarray:
        return trained_ids(self.trained_store)

    @property
    def signatures_dir(self) -> Path:
        return self.root / "trained_minhash"

    def trained(self, ngram: int | None) -> History:
        """Ids of every document trained on and, for near-duplicates (``ngram``), their MinHash signatures
        (memory-mapped: 256 bytes a document)."""
        if ngram is None:
            return History(self.trained_ids())
        files = sorted(p for p in self.signatures_dir.glob(f"*.n{ngram}.npy") if not p.name.endswith(".bands.npy"))
        return History(self.trained_ids(), Signatures([load_signatures(f) for f in files], ngram=ngram))

    def _record_signatures(self, corpus: Corpus, name: str) -> None:
        """The training split's signatures, kept beside the trained ids (idempotent: one file per model/batch)."""
        known = corpus.validation or _read(corpus.path / "validation.json", {})
        ngram = known.near_dup_ngram if corpus.validation else known.get("near_dup_ngram")
        target = self.signatures_dir / f"{name}.n{ngram}.npy"
        if not ngram or target.exists() or not corpus.shards():
            return
        store = Signatures([shard_signatures(s, ngram) for s in corpus.shards()])
        train = corpus.keep()[corpus.split_index("train")]
        save_signatures(target, store.rows(train), store.rows(train, bands=True))

    # -- frozen eval slices
    @property
    def slices_dir(self) -> Path:
        return self.root / "eval_slices"

    def frozen_slices(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.slices_dir.glob("*.jsonl"))}

    def slice_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every frozen slice's documents (``text``, ``label``, ``doc_id``), by slice name."""
        return {
            name: [json.loads(line) for line in path.open() if line.strip()]
            for name, path in self.frozen_slices().items()
        }

    def freeze_slice(self, corpus: Corpus, name: str) -> Path:
        """The corpus' test split becomes a frozen eval slice for every later cycle."""
        test = corpus.split("test").select_columns(["text", "label", "doc_id"])
        path = self.slices_dir / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            f.writelines(json.dumps(row) + "\n" for row in test)
        return path

    # -- replay sources
    def corpora(self) -> list[Corpus]:
        return [Corpus(root=root) for root in _read(self.root / "corpora.json", [])]

    def remember_corpus(self, corpus: Corpus) -> None:
        with self.locked():
            roots = [c.root for c in self.corpora()]
            if corpus.root not in roots:
                _write(self.root / "corpora.json", [*roots, corpus.root])

    def record_training_data(self, corpus: Corpus, slice_name: str) -> int:
        """Once a model is registered: its training documents count as trained on, its corpus becomes a
        replay source, and its test split a frozen eval slice. Returns how many ids were new."""
        self.remember_corpus(corpus)
        self.freeze_slice(corpus, slice_name)
        self._record_signatures(corpus, slice_name)
        train = corpus.keep()[corpus.split_index("train")]
        ids = doc_ids(corpus.shards())[train]
        with self.locked():
            return record_trained(self.trained_store, ids)

    # -- continual cycles in progress (lmloop.continual.journal reads and writes them)
    def cycle_file(self, batch: str) -> Path:
        return self.root / "cycles" / f"{batch}.json"

    def cycle_files(self) -> list[Path]:
        return sorted((self.root / "cycles").glob("*.json"))

    # -- champion moves
    @property
    def locks_db(self) -> Path:
        return self.root / "locks.db"

    def history(self) -> list[dict[str, Any]]:
        path = self.root / "gate_history.jsonl"
        return [json.loads(line) for line in path.open()] if path.exists() else []

    def record(self, event: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "gate_history.jsonl").open("a") as f:
            f.write(json.dumps({"time": time.time(), **event}) + "\n")
