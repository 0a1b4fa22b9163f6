"""Byte-level BPE trained from scratch with ``tokenizers``, wrapped for transformers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int, *, out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and save it with ``save_pretrained`` to ``out_dir``.

    Byte-level means any UTF-8 text encodes without unknown tokens. ``<|endoftext|>`` separates
    documents and doubles as padding (causal LM losses mask padding by attention).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=EOS)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(out_dir)
    return wrapped


def load_tokenizer(path: Path | str) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(str(path))
