"""Content-addressed token cache: one Arrow file of token ids per (data shard, tokenizer).

A shard's name already encodes its raw file's hash and the cleaning settings, and the tokenizer
is identified by the hash of its ``tokenizer.json``, so re-running on unchanged data tokenizes
nothing and a new file tokenizes only that file (with a reused tokenizer).
"""

from __future__ import annotations

import hashlib
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from lmloop.contracts import Corpus
from lmloop.files import private_tmp
from lmloop.progress import progress

_BATCH = 10_000


def tokenizer_digest(tokenizer_dir: Path | str) -> str:
    return hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest()[:16]


def _encode(batch: pa.Table, tokenizer: PreTrainedTokenizerBase) -> pa.Table:
    """Straight to the Rust ``encode_batch_fast`` (both cores, no offsets), and straight back to Arrow:
    one flat int32 buffer plus offsets, no per-document Python arrays."""
    eos = tokenizer.eos_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch_fast(
        batch.column("text").to_pylist(), add_special_tokens=False
    )
    n_tokens = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype=np.int32)
    np.cumsum(n_tokens + 1, out=offsets[1:])
    values = np.fromiter(chain.from_iterable((*e.ids, eos) for e in encodings), dtype=np.int32, count=int(offsets[-1]))
    input_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.table({"input_ids": input_ids, "n_tokens": pa.array(n_tokens)})


def tokenize_shard(shard: str, tokenizer: PreTrainedTokenizerBase, cache_dir: Path) -> tuple[str, bool]:
    """Token ids (each document followed by end-of-text) for one shard; ``(path, was_cached)``."""
    out = cache_dir / f"{Path(shard).stem}.arrow"
    if out.exists():
        return str(out), True
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = Dataset.from_file(shard).select_columns(["text"]).with_format("arrow")
    tmp = private_tmp(out)  # concurrent runs tokenize into their own files; the rename is atomic
    data.map(
        _encode,
        batched=True,
        batch_size=_BATCH,
        remove_columns=["text"],
        fn_kwargs={"tokenizer": tokenizer},
        cache_file_name=str(tmp),
        new_fingerprint=out.stem,
        desc="tokenize",
    )
    tmp.replace(out)
    return str(out), False


def pending_shards(shards: list[str], tokenizer_dir: Path | str, cache_root: Path) -> list[str]:
    """The shards without token ids for this tokenizer yet (what a worker pool would tokenize)."""
    cache_dir = cache_root / tokenizer_digest(tokenizer_dir)
    return [s for s in dict.fromkeys(shards) if not (cache_dir / f"{Path(s).stem}.arrow").exists()]


def tokenize_one(shard: str, tokenizer_dir: Path | str, cache_root: Path) -> str:
    """One shard's token ids into the cache (a worker's unit); returns the cached file."""
    from lmloop.tokenizer import load_tokenizer

    return tokenize_shard(shard, load_tokenizer(tokenizer_dir), cache_root / tokenizer_digest(tokenizer_dir))[0]


def tokenize_shards(shards: list[str], tokenizer_dir: Path | str, cache_root: Path) -> dict[str, object]:
    from lmloop.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    cache_dir = cache_root / tokenizer_digest(tokenizer_dir)
    results = []
    with progress("tokenize", len(shards), "shards") as advance:
        for shard in shards:
            results.append(tokenize_shard(shard, tokenizer, cache_dir))
            advance(1)
    return {
        "paths": [p for p, _ in results],
        "cached": sum(c for _, c in results),
        "tokenized": sum(not c for _, c in results),
    }


def load_tokens(paths: list[str]) -> Dataset:
    return concatenate_datasets([Dataset.from_file(p) for p in paths])


def corpus_tokens(corpus: Corpus, tokenizer_dir: Path | str, cache_root: Path) -> tuple[Dataset, dict[str, object]]:
    """Token ids of every kept document of ``corpus`` (row-aligned with ``corpus.load()``), from the cache."""
    cache = tokenize_shards(corpus.shards(), tokenizer_dir, cache_root)
    return load_tokens(cache["paths"]).select(corpus.keep()), cache
