"""Tokenizer and packing tasks."""

from __future__ import annotations

from prefect import task

from lmloop import stages, tracking
from lmloop.config import TokenizerConfig, ValidationConfig
from lmloop.contracts import Blocks, Corpus, Run, TokenizerRef


@task
def train_tokenizer(corpus: Corpus, cfg: TokenizerConfig, run: Run) -> TokenizerRef:
    out = stages.prepare_tokenizer(corpus, cfg, run.work)
    tracking.log_metrics(run.run_id, {"tokenizer_vocab_size": out.vocab_size})
    return out


@task
def tokenize_and_pack(
    corpus: Corpus,
    tokenizer: TokenizerRef,
    *,
    block_size: int,
    validation: ValidationConfig,
    run: Run,
    batch_size: int = 1,
    sources: list[str] | None = None,
) -> Blocks:
    """Pack the corpus into blocks; fewer training blocks than one ``batch_size`` is refused (DataTooSmall)."""
    out = stages.pack_blocks(
        corpus,
        tokenizer.path,
        block_size=block_size,
        validation=validation,
        tokens_cache=run.home.cache / "tokens",
        out=run.work,
        min_train_blocks=batch_size,
    )
    tracking.log_metrics(run.run_id, out.counts)
    if sources:  # the splits as dataset inputs, now with their token counts
        from tasks.data import log_splits

        log_splits(corpus, sources, run, out.counts)
    return out
