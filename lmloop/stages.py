"""The data stages: raw files -> :class:`Ingested` -> :class:`Corpus` -> :class:`TokenizerRef` -> :class:`Blocks`.

Values in, values out (:mod:`lmloop.contracts`); every folder a stage reads or writes is an argument.
Prefect tasks wrap these in a few lines; nothing here knows about Prefect. Each stage writes its
output folder (artifact + the numbers that describe it) so a run can be inspected on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from data_checks import validate_token_lengths
from lmloop.config import DataConfig, TokenizerConfig, ValidationConfig
from lmloop.contracts import Blocks, Corpus, Ingested, TokenizerRef
from lmloop.corpus import DataValidationError, gate
from lmloop.errors import UserError
from lmloop.ingest import ingest_files
from lmloop.packing import pack
from lmloop.state import State
from lmloop.token_cache import corpus_tokens
from lmloop.tokenizer import load_tokenizer, train_bpe

__all__ = ["DataTooSmall", "DataValidationError", "ingest", "pack_blocks", "prepare_tokenizer", "validate"]


class DataTooSmall(UserError):
    """Too few tokens for the configured shapes; the message says how many are needed and what to change."""


def ingest(sources: list[str], *, data: DataConfig, validation: ValidationConfig, shards: Path, out: Path) -> Ingested:
    """Read, clean and check every raw file (GX file suite) into content-addressed shards under ``shards``."""
    return Ingested.write(out, ingest_files(sources, data, validation, shards))


def validate(
    ingested: Ingested,
    *,
    data: DataConfig,
    validation: ValidationConfig,
    quarantine: Path,
    state: State,
) -> Corpus:
    """The data gate over the ingested files' reports; raises ``DataValidationError`` when rejected.
    With ``data.dedup_against_trained``, documents some registered model trained on (``state``) are dropped."""
    trained = (
        state.trained(data.near_dup_ngram if data.near_dup_threshold else None) if data.dedup_against_trained else None
    )
    out = Path(ingested.dir)
    return gate(
        ingested.reports(), data=data, validation=validation, out=out, quarantine_dir=quarantine, trained=trained
    )


def prepare_tokenizer(corpus: Corpus, cfg: TokenizerConfig, out: Path) -> TokenizerRef:
    """Train byte-level BPE on the training split, or reuse ``cfg.path``."""
    target = out / "tokenizer"
    if cfg.path:
        shutil.copytree(cfg.path, target, dirs_exist_ok=True)
        return TokenizerRef(path=str(target), vocab_size=len(load_tokenizer(target)), reused=True)
    train = corpus.split("train").select_columns(["text"])
    texts = (t for batch in train.iter(batch_size=10_000) for t in batch["text"])
    tokenizer = train_bpe(texts, cfg.vocab_size, cfg.min_frequency, target)
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
