"""Content-addressed token cache: one Arrow file of token ids per (data shard, tokenizer).

A shard's name already encodes its raw file's hash and the cleaning settings, and the tokenizer
is identified by the hash of its ``tokenizer.json``, so re-running on unchanged data tokenizes
nothing and a new file tokenizes only that file (with a reused tokenizer).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

_BATCH = 2_000


def tokenizer_digest(tokenizer_dir: Path | str) -> str:
    return hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest()[:16]


def _encode(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase) -> dict[str, list]:
    """Straight to the Rust ``encode_batch_fast`` (both cores, no offsets): the wrapper's overhead is not needed."""
    eos = tokenizer.eos_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch_fast(batch["text"], add_special_tokens=False)
    ids = [np.append(np.asarray(e.ids, dtype=np.int32), np.int32(eos)) for e in encodings]
    return {"input_ids": ids, "n_tokens": [len(i) - 1 for i in ids]}


def tokenize_shard(shard: str, tokenizer: PreTrainedTokenizerBase, cache_dir: Path) -> tuple[str, bool]:
    """Token ids (each document followed by end-of-text) for one shard; ``(path, was_cached)``."""
    out = cache_dir / f"{Path(shard).stem}.arrow"
    if out.exists():
        return str(out), True
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = Dataset.from_file(shard).select_columns(["text"])
    tmp = out.with_suffix(".partial")
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


def tokenize_shards(shards: list[str], tokenizer_dir: Path | str, cache_root: Path) -> dict[str, object]:
    from lmloop.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    cache_dir = cache_root / tokenizer_digest(tokenizer_dir)
    results = [tokenize_shard(s, tokenizer, cache_dir) for s in shards]
    return {
        "paths": [p for p, _ in results],
        "cached": sum(c for _, c in results),
        "tokenized": sum(not c for _, c in results),
    }


def load_tokens(paths: list[str]) -> Dataset:
    return concatenate_datasets([Dataset.from_file(p) for p in paths])


def write_token_index(out: Path, paths: list[str]) -> None:
    out.write_text(json.dumps({"paths": paths}, indent=2) + "\n")
