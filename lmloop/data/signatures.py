"""The MinHash signature store: each shard's signatures (and LSH bands) written beside it by the worker that
wrote the shard, loaded for near-duplicate decisions across shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lmloop.data import near_dups
from lmloop.data.file_reports import shard_column


def signature_path(shard: str | Path, ngram: int) -> Path:
    """The MinHash signatures of a shard's rows, beside it (written by the worker that wrote the shard)."""
    return Path(shard).with_suffix(f".minhash{ngram}.npy")


def _bands_path(target: Path) -> Path:
    return target.with_name(target.name.removesuffix(".npy") + ".bands.npy")


def write_atomic(path: Path, write: Any) -> None:
    """``write(file)`` into a private temporary file beside ``path``, then one rename: readers see the whole
    file or none, and concurrent writers never share a temporary file."""
    from lmloop.core.files import private_tmp

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
    write_atomic(_bands_path(target), lambda f: np.save(f, bands))
    write_atomic(target, lambda f: np.save(f, sigs))


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
        write_signatures(shard, shard_column(shard, "text"), ngram)
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
            values = shard_column(shards[p], "text").take(pa.array(index[mine] - starts[p])).to_pylist()
            for i, value in zip(mine.tolist(), values, strict=True):
                out[i] = value
        return out

    return near_dups.Signatures(parts, texts, ngram)
