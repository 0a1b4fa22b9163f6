"""Held-out data: the frozen eval sets (ids and signatures, cleaned like training data) and the
deterministic hash split of documents into train, validation and test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmloop.core.config import DataConfig
from lmloop.data import near_dups
from lmloop.data.cleaning import doc_id, normalize_text
from lmloop.data.readers import Columns, read_rows
from lmloop.data.sources import discover


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
