"""The training room's values: a tokenizer, packed blocks, a registered base to start from, and a trained model
folder with its metrics. Each owns its on-disk layout (``blocks/<split>``, ``metrics.json``, ``samples.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from lmloop.core.config import ModelConfig
from lmloop.core.files import write_json
from lmloop.core.values import Value
from lmloop.training.bases import PretrainedBase


class TokenizerRef(Value):
    """A saved tokenizer (``save_pretrained`` folder)."""

    path: str
    vocab_size: int | None = None
    reused: bool = False


class Blocks(Value):
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


class BaseModelRef(Value):
    """A model to start from: a registered version (downloaded) or a pretrained checkpoint (``pretrained``: a
    model folder or a hub id), its files, the length it trains at and, for lmloop's own architectures, the
    architecture as lmloop's config describes it."""

    name: str  # the registered model, or the base's spec (a folder, hf:org/name)
    version: str  # the registered version, or the base's commit ("folder" for a local folder)
    dir: str
    tokenizer_dir: str
    block_size: int
    model: ModelConfig | None = None
    pretrained: PretrainedBase | None = None

    @property
    def encoder(self) -> bool:
        """An encoder-only base (BERT-style): first-token pooling, no causal-LM objective."""
        return bool(self.pretrained and self.pretrained.encoder)

    @property
    def pickle_weights(self) -> bool:
        """A pretrained base whose weights are pickle files only (the user opted in to load them)."""
        return bool(self.pretrained and self.pretrained.pickle_weights)

    @property
    def label(self) -> str:
        return self.pretrained.spec if self.pretrained else f"{self.name} v{self.version}"

    @property
    def tokenizer(self) -> TokenizerRef:
        return TokenizerRef(path=self.tokenizer_dir, reused=True)


class TrainedModel(Value):
    """A model folder (weights, config, tokenizer, ``train_summary.json``) and, once evaluated, its metrics."""

    dir: str
    summary: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list, description="Class names, for classifiers.")

    @property
    def path(self) -> Path:
        return Path(self.dir)

    def with_evaluation(
        self, metrics: dict[str, Any], slices: dict[str, Any], samples: list[dict[str, str]], *, documents: list[str]
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
