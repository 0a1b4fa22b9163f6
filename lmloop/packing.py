"""Tokenize documents and pack them into fixed-length blocks (no padding waste)."""

from __future__ import annotations

from itertools import chain

from datasets import Dataset
from transformers import PreTrainedTokenizerBase


def group_texts(batch: dict[str, list[list[int]]], block_size: int) -> dict[str, list[list[int]]]:
    """Concatenate token lists and cut them into ``block_size`` blocks; the tail shorter than a block is dropped."""
    ids = list(chain.from_iterable(batch["input_ids"]))
    usable = len(ids) // block_size * block_size
    return {"input_ids": [ids[i : i + block_size] for i in range(0, usable, block_size)]}


def tokenize_documents(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, num_proc: int | None = None) -> Dataset:
    """``input_ids`` per document, each followed by the end-of-text separator."""
    eos = tokenizer.eos_token_id

    def encode(batch: dict[str, list]) -> dict[str, list[list[int]]]:
        encoded = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [ids + [eos] for ids in encoded]}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, num_proc=num_proc)


def pack(tokenized: Dataset, block_size: int, num_proc: int | None = None) -> Dataset:
    """Packed blocks; batches of 1,000 documents keep the dropped tail per batch under one block."""
    return tokenized.map(
        group_texts, batched=True, batch_size=1000, fn_kwargs={"block_size": block_size}, num_proc=num_proc
    )
