"""What stages hand each other: small, frozen, JSON-serialisable values that name their outputs on disk.

A Prefect task returns one of these and the next task takes it as its argument, so the flow's graph
shows the data flow and results persist as JSON. Each value's class is the one owner of its on-disk
layout: nothing else reads ``files.json``, ``corpus.json``, ``keep.npy``, ``split-*.npy`` or
``blocks/<split>`` by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmloop.config import ModelConfig
from lmloop.data import FileReport, doc_ids, load_shards, split_indices
from lmloop.settings import Home

SPLITS = ("train", "validation", "test")


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True)


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


class Run(_Value):
    """One flow run (or one stage of it, nested in MLflow under the flow's run): its MLflow run id and the
    home it writes under (``work/<flow-run-id>/``)."""

    run_id: str
    home: Home
    parent_id: str | None = None  # a nested (stage) run: it writes under its parent's folder

    @property
    def work(self) -> Path:
        return self.home.work / (self.parent_id or self.run_id)


class Ingested(_Value):
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


class Corpus(_Value):
    """The documents the gate let through: Arrow shards plus index arrays (kept documents, then one per
    split), memory-mapped and filtered by index, never copied. ``validation`` is the gate's summary."""

    root: str
    validation: dict[str, Any] = Field(default_factory=dict)
    sizes: dict[str, int] = Field(default_factory=dict, description="Documents per split, once split.")
    digests: dict[str, str] = Field(default_factory=dict, description="A digest of each split's document ids.")

    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def manifest_digest(self) -> str:
        return self.validation.get("manifest_digest", "")

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


class TokenizerRef(_Value):
    """A saved tokenizer (``save_pretrained`` folder)."""

    path: str
    vocab_size: int | None = None
    reused: bool = False


class Blocks(_Value):
    """Packed fixed-length token blocks per split under ``path/<split>`` (``save_to_disk``)."""

    path: str
    block_size: int
    tokenizer: str
    counts: dict[str, Any] = Field(default_factory=dict)

    def split_path(self, name: str) -> Path:
        return Path(self.path) / name

    def load(self, name: str) -> Any:
        from datasets import load_from_disk

        path = self.split_path(name)
        return load_from_disk(str(path)) if path.exists() else None


class BaseModelRef(_Value):
    """A registered model downloaded to start from: its files, version and architecture."""

    name: str
    version: str
    dir: str
    tokenizer_dir: str
    model: ModelConfig

    @property
    def tokenizer(self) -> TokenizerRef:
        return TokenizerRef(path=self.tokenizer_dir, reused=True)


class TrainedModel(_Value):
    """A model folder (weights, config, tokenizer, ``train_summary.json``) and, once evaluated, its metrics."""

    dir: str
    summary: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list, description="Class names, for classifiers.")

    @property
    def path(self) -> Path:
        return Path(self.dir)

    def with_evaluation(
        self, metrics: dict[str, Any], slices: dict[str, Any], samples: list[dict[str, str]], documents: list[str]
    ) -> TrainedModel:
        """Write ``metrics.json`` (with the per-slice figures and the ids of the documents scored) and
        ``samples.json`` beside the model."""
        write_json(self.path / "metrics.json", {**metrics, "slices": slices, "evaluated_doc_ids": documents})
        write_json(self.path / "samples.json", samples)
        return self.model_copy(update={"metrics": metrics})

    def slices(self) -> dict[str, Any]:
        return json.loads((self.path / "metrics.json").read_text()).get("slices", {})

    def samples(self) -> list[dict[str, str]]:
        return json.loads((self.path / "samples.json").read_text())


class Registered(_Value):
    model_name: str
    model_version: str
    aliases: list[str]


class GateDecision(_Value):
    """Champion vs challenger on the new batch's held-out split and every frozen slice."""

    promote: bool
    reason: str
    batch: str
    slices: dict[str, dict[str, float]]
    comparison: dict[str, Any] = Field(description="lmloop.gate.Decision as a dict: slices, CIs, probe.")
    probe: dict[str, Any] = Field(default_factory=dict)

    def numbers(self) -> dict[str, float]:
        """The decision's key figures, flat: for model-version tags and run metrics."""
        new = self.comparison["new_slice"]
        out = {"new_slice_improvement": new["improvement"], "new_slice_ci_low": new["ci_low"]}
        for cmp in [new, *self.comparison.get("old_slices", [])]:  # both models, on the same documents
            out |= {
                f"slice.{cmp['name']}.champion_bits_per_byte": cmp["champion_bpb"],
                f"slice.{cmp['name']}.challenger_bits_per_byte": cmp["challenger_bpb"],
            }
        for metric, (champ, chall, _) in self.comparison.get("classification", {}).items():
            out |= {f"probe_{metric}_champion": champ, f"probe_{metric}_challenger": chall}
        return out
