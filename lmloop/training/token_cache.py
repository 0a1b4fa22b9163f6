"""Content-addressed token cache: one Arrow file of token ids per (data shard, tokenizer).

A shard's name already encodes its raw file's hash and the cleaning settings, and the tokenizer
is identified by the hash of its ``tokenizer.json``, so re-running on unchanged data tokenizes
nothing and a new file tokenizes only that file (with a reused tokenizer).
"""

from __future__ import annotations

import hashlib
import json
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from lmloop.data.values import Corpus

if TYPE_CHECKING:
    from datasets import Dataset
from lmloop.core.files import intact, private_tmp, seal
from lmloop.core.progress import progress
from lmloop.core.stopping import check_pending

_BATCH = 10_000
_TOKENS = pa.schema([("input_ids", pa.list_(pa.int32())), ("n_tokens", pa.int32())])
EOS = "<|endoftext|>"  # lmloop's tokenizers (lmloop.training.tokenizer); a reused one names its own in tokenizer_config


def tokenizer_digest(tokenizer_dir: Path | str) -> str:
    return hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest()[:16]


def encoder(tokenizer_dir: Path | str) -> tuple[Tokenizer, int]:
    """The saved tokenizer's Rust core and its end-of-text id, without importing transformers (a worker
    process that only tokenizes starts in a fraction of the time)."""
    folder = Path(tokenizer_dir)
    config = folder / "tokenizer_config.json"
    eos = json.loads(config.read_text()).get("eos_token") if config.exists() else None
    eos = (eos.get("content") if isinstance(eos, dict) else eos) or EOS
    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    eos_id = backend.token_to_id(eos)
    if eos_id is None:
        raise ValueError(f"{folder}: the end-of-text token {eos!r} is not in the vocabulary")
    return backend, eos_id


def _encode(texts: list[str], backend: Tokenizer, eos: int) -> pa.RecordBatch:
    """Straight to the Rust ``encode_batch_fast`` (both cores, no offsets), and straight back to Arrow:
    one flat int32 buffer plus offsets, no per-document Python arrays."""
    encodings = backend.encode_batch_fast(texts, add_special_tokens=False)
    n_tokens = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype=np.int32)
    np.cumsum(n_tokens + 1, out=offsets[1:])
    values = np.fromiter(chain.from_iterable((*e.ids, eos) for e in encodings), dtype=np.int32, count=int(offsets[-1]))
    input_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.RecordBatch.from_arrays([input_ids, pa.array(n_tokens)], schema=_TOKENS)


def tokenize_shard(shard: str, encoding: tuple[Tokenizer, int], cache_dir: Path) -> tuple[str, bool]:
    """Token ids (each document followed by end-of-text) for one shard, streamed batch by batch into an
    Arrow file beside the others; ``(path, was_cached)``."""
    out = cache_dir / f"{Path(shard).stem}.arrow"
    if intact(out):  # a truncated or damaged entry is rebuilt, not read
        return str(out), True
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = private_tmp(out)  # concurrent runs tokenize into their own files; the rename is atomic
    try:
        with pa.memory_map(shard) as source, pa.OSFile(str(tmp), "wb") as sink:
            reader = pa.ipc.open_stream(source)
            with pa.ipc.new_stream(sink, _TOKENS) as writer:
                texts: list[str] = []
                for batch in reader:
                    texts += batch.column(reader.schema.get_field_index("text")).to_pylist()
                    while len(texts) >= _BATCH:
                        check_pending(f"tokenizing {shard}")  # the partial file is removed below
                        writer.write_batch(_encode(texts[:_BATCH], *encoding))
                        texts = texts[_BATCH:]
                if texts:
                    writer.write_batch(_encode(texts, *encoding))
        seal(tmp.replace(out))
    finally:
        tmp.unlink(missing_ok=True)
    return str(out), False


def pending_shards(shards: list[str], tokenizer_dir: Path | str, cache_root: Path) -> list[str]:
    """The shards without token ids for this tokenizer yet (what a worker pool would tokenize)."""
    cache_dir = cache_root / tokenizer_digest(tokenizer_dir)
    return [s for s in dict.fromkeys(shards) if not intact(cache_dir / f"{Path(s).stem}.arrow")]


def tokenize_one(shard: str, tokenizer_dir: Path | str, cache_root: Path) -> str:
    """One shard's token ids into the cache (a worker's unit); returns the cached file."""
    return tokenize_shard(shard, encoder(tokenizer_dir), cache_root / tokenizer_digest(tokenizer_dir))[0]


def tokenize_shards(shards: list[str], tokenizer_dir: Path | str, cache_root: Path) -> dict[str, object]:
    encoding = encoder(tokenizer_dir)
    cache_dir = cache_root / tokenizer_digest(tokenizer_dir)
    results = []
    with progress("tokenize", len(shards), "shards") as advance:
        for shard in shards:
            results.append(tokenize_shard(shard, encoding, cache_dir))
            advance(1)
    return {
        "paths": [p for p, _ in results],
        "cached": sum(c for _, c in results),
        "tokenized": sum(not c for _, c in results),
    }


def load_tokens(paths: list[str]) -> Dataset:
    from datasets import Dataset, concatenate_datasets

    return concatenate_datasets([Dataset.from_file(p) for p in paths])


def corpus_tokens(corpus: Corpus, tokenizer_dir: Path | str, cache_root: Path) -> tuple[Dataset, dict[str, object]]:
    """Token ids of every kept document of ``corpus`` (row-aligned with ``corpus.load()``), from the cache."""
    cache = tokenize_shards(corpus.shards(), tokenizer_dir, cache_root)
    return load_tokens(cache["paths"]).select(corpus.keep()), cache
