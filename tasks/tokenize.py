"""Tokenizer and packing tasks."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from lmloop.core.config import DataConfig, TokenizerConfig, ValidationConfig
from lmloop.core.values import Run
from lmloop.data.report import report_splits
from lmloop.data.values import Corpus
from lmloop.training import stages as training_stages
from lmloop.training import token_cache
from lmloop.training.values import Blocks, TokenizerRef
from tasks.runners import map_units, runner_kind
from tasks.tracking import reporter


@task
def train_tokenizer(corpus: Corpus, cfg: TokenizerConfig, run: Run) -> TokenizerRef:
    out = training_stages.prepare_tokenizer(corpus, cfg, run.work)
    reporter(run).metrics({"tokenizer_vocab_size": out.vocab_size})
    return out


@task(retries=1, retry_delay_seconds=1)
def tokenize_unit(item: str, tokenizer: str, cache_root: Path) -> str:
    """One shard's token ids into the content-addressed cache (a worker's unit)."""
    return token_cache.tokenize_one(item, tokenizer, cache_root)


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
    data: DataConfig = DataConfig(),  # noqa: B008  (frozen)
) -> Blocks:
    """Tokenize the shards not cached yet (mapped over ``data.task_runner``), then pack the corpus into blocks;
    fewer training blocks than one ``batch_size`` is refused (DataTooSmall)."""
    cache_root = run.home.tokens
    pending = token_cache.pending_shards(corpus.shards(), tokenizer.path, cache_root)
    kind = runner_kind(data, sum(Path(s).stat().st_size for s in pending))
    map_units(tokenize_unit, pending, kind, data, tokenizer=tokenizer.path, cache_root=cache_root)
    out = training_stages.pack_blocks(
        corpus,
        tokenizer.path,
        block_size=block_size,
        validation=validation,
        tokens_cache=cache_root,
        out=run.work,
        min_train_blocks=batch_size,
    )
    counts = {**out.counts, "shards_tokenized": len(pending)}
    counts["shards_from_cache"] = len(set(corpus.shards())) - len(pending)
    out = out.model_copy(update={"counts": counts})
    report = reporter(run)
    report.metrics(out.counts)
    if sources:  # the splits as dataset inputs, now with their token counts
        report_splits(report, corpus, sources, tokens=out.counts)
    return out
