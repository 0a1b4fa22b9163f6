from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from lmloop import stages, tracking
from lmloop.config import TokenizerConfig, ValidationConfig


@task
def train_tokenizer(data_dir: str, cfg: TokenizerConfig, work: str, run_id: str) -> dict[str, Any]:
    out = stages.tokenizer_stage(data_dir, cfg, Path(work))
    tracking.log_metrics(run_id, {"tokenizer_vocab_size": out["vocab_size"]})
    return out


@task
def tokenize_and_pack(
    data_dir: str, tokenizer: str, block_size: int, validation: ValidationConfig, work: str, run_id: str
) -> dict[str, Any]:
    out = stages.pack_stage(data_dir, tokenizer, block_size, validation, Path(work))
    tracking.log_metrics(run_id, {k: v for k, v in out.items() if k != "blocks"})
    return out
