"""Tiny pretrained-style checkpoints, built by the tests with ``save_pretrained`` (no downloads): a BERT-style
encoder with a WordPiece tokenizer, a GPT-2 and a Llama with a byte-level BPE tokenizer, and a Hugging Face
cache laid out in a folder exactly as ``hf download`` leaves it (``models--org--name/refs/main`` naming a
snapshot), so the hub code path runs offline."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

LICENSE_CARD = "---\nlicense: apache-2.0\ntags:\n- tiny\n---\n# A tiny test checkpoint\n"


def _words(texts: list[str]) -> list[str]:
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})


def tiny_bert(folder: Path, texts: list[str]) -> Path:
    """A 2-layer BERT-style encoder (masked-LM checkpoint, as encoders are published) and its WordPiece
    tokenizer over the words of ``texts``."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_words(texts)]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(LICENSE_CARD)
    return folder


def _bpe(folder: Path, texts: list[str]):
    from lmloop.training.tokenizer import train_bpe

    return train_bpe(iter(texts), 384, 2, out_dir=folder)


def tiny_gpt2(folder: Path, texts: list[str]) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _bpe(folder, texts)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=128, bos_token_id=eos, eos_token_id=eos
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def tiny_llama(folder: Path, texts: list[str]) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _bpe(folder, texts)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def hub_cache(cache: Path, repo: str, checkpoint: Path) -> str:
    """``checkpoint`` laid out in the Hugging Face cache ``cache`` as ``repo`` at revision main; returns the
    snapshot's commit hash."""
    commit = hashlib.sha1(f"{repo}:{checkpoint}".encode()).hexdigest()
    entry = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(checkpoint, entry / "snapshots" / commit)
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(commit)
    return commit


def texts_of(corpus: Path, limit: int = 400) -> list[str]:
    """Some training texts of the test corpus (for the tiny tokenizers' vocabularies)."""
    import json

    out: list[str] = []
    for path in sorted(p for p in corpus.rglob("*.jsonl") if "_meta" not in p.parts):
        rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        out += [row["text"] for row in rows if "text" in row]
    return out[:limit]
