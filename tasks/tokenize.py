from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from lmloop import stages, tracking
from lmloop.config import TokenizerConfig


@task
def train_tokenizer(splits: str, cfg: TokenizerConfig, work: str, run_id: str) -> dict[str, Any]:
    out = stages.tokenizer_stage(splits, cfg, Path(work))
    tracking.log_metrics(run_id, {"tokenizer_vocab_size": out["vocab_size"]})
    return out


@task
def tokenize_and_pack(splits: str, tokenizer: str, block_size: int, work: str, run_id: str) -> dict[str, Any]:
    out = stages.pack_stage(splits, tokenizer, block_size, Path(work))
    tracking.log_metrics(run_id, {k: v for k, v in out.items() if k != "blocks"})
    return out
