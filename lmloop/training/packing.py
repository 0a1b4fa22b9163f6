"""Pack tokenized documents into fixed-length blocks (no padding waste); token ids come from the token cache."""

from __future__ import annotations

from itertools import chain

from datasets import Dataset


def group_texts(batch: dict[str, list[list[int]]], block_size: int) -> dict[str, list[list[int]]]:
    """Concatenate token lists and cut them into ``block_size`` blocks; the tail shorter than a block is dropped."""
    ids = list(chain.from_iterable(batch["input_ids"]))
    usable = len(ids) // block_size * block_size
    return {"input_ids": [ids[i : i + block_size] for i in range(0, usable, block_size)]}


def pack(tokenized: Dataset, block_size: int, num_proc: int | None = None) -> Dataset:
    """Packed blocks; batches of 1,000 documents keep the dropped tail per batch under one block."""
    return tokenized.map(
        group_texts, batched=True, batch_size=1000, fn_kwargs={"block_size": block_size}, num_proc=num_proc
    )
