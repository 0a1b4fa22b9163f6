"""The token stages: :class:`~lmloop.data.values.Corpus` -> :class:`~lmloop.training.values.TokenizerRef` ->
:class:`~lmloop.training.values.Blocks` (byte-level BPE, the token cache, packing).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from data_checks import validate_token_lengths
from lmloop.core.config import TokenizerConfig, ValidationConfig
from lmloop.core.errors import UserError
from lmloop.data.gate import DataValidationError
from lmloop.data.values import Corpus
from lmloop.training.packing import pack
from lmloop.training.token_cache import corpus_tokens
from lmloop.training.tokenizer import load_tokenizer, train_bpe
from lmloop.training.values import Blocks, TokenizerRef


class DataTooSmall(UserError):
    """Too few tokens for the configured shapes; the message says how many are needed and what to change."""


def prepare_tokenizer(corpus: Corpus, cfg: TokenizerConfig, out: Path) -> TokenizerRef:
    """Train byte-level BPE on the training split, or reuse ``cfg.path``."""
    target = out / "tokenizer"
    if cfg.path:
        shutil.copytree(cfg.path, target, dirs_exist_ok=True)
        return TokenizerRef(path=str(target), vocab_size=len(load_tokenizer(target)), reused=True)
    train = corpus.split("train").select_columns(["text"])
    texts = (t for batch in train.iter(batch_size=10_000) for t in batch["text"])
    tokenizer = train_bpe(texts, cfg.vocab_size, cfg.min_frequency, out_dir=target)
    return TokenizerRef(path=str(target), vocab_size=len(tokenizer), reused=False)


def _check_token_lengths(corpus: Corpus, tokens: object, validation: ValidationConfig) -> None:
    frame = corpus.load().select_columns(["text", "source", "line"]).to_pandas()
    frame["n_tokens"] = np.asarray(tokens["n_tokens"])
    report = validate_token_lengths(frame, validation)
    if not report.success:
        raise DataValidationError(report.to_dict(), report.summary())


def pack_blocks(
    corpus: Corpus,
    tokenizer: str,
    *,
    block_size: int,
    validation: ValidationConfig,
    tokens_cache: Path,
    out: Path,
    min_train_blocks: int = 1,
) -> Blocks:
    """Token ids from the content-addressed cache, packed into blocks for train and validation. Fewer
    training blocks than ``min_train_blocks`` (one batch) is refused with what is needed; a validation
    split too small for one block is left out (no validation loss), never an error."""
    tokens, cache = corpus_tokens(corpus, tokenizer, tokens_cache)
    if validation.max_tokens:
        _check_token_lengths(corpus, tokens, validation)
    blocks = Blocks(path=str(out / "blocks"), block_size=block_size, tokenizer=tokenizer)
    counts: dict[str, int] = {"shards_tokenized": cache["tokenized"], "shards_from_cache": cache["cached"]}
    for name in ("train", "validation"):
        split = tokens.select(corpus.split_index(name))
        packed = pack(split.select_columns(["input_ids"]), block_size)
        counts[f"{name}_blocks"] = len(packed)
        if name == "train" and len(packed) < min_train_blocks:
            raise DataTooSmall(
                f"{sum(split['n_tokens'])} training tokens pack into {len(packed)} blocks of {block_size}; "
                f"one batch needs {min_train_blocks} blocks ({min_train_blocks * block_size} tokens): add data, "
                f"or lower model.block_size (now {block_size}) or train.batch_size (now {min_train_blocks})"
            )
        if len(packed):
            packed.save_to_disk(str(blocks.split_path(name)))
    counts["train_tokens"] = counts["train_blocks"] * block_size
    for name in ("train", "validation", "test"):  # each split's own tokens, for its dataset's profile
        counts[f"{name}_text_tokens"] = int(sum(tokens.select(corpus.split_index(name))["n_tokens"]))
    return blocks.model_copy(update={"counts": counts})
