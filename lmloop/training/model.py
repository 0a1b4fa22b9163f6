"""Causal LMs built from config with transformers (no hub): Llama- or GPT-2-style, SDPA attention.

The embedding table is padded to a multiple of 64 rows (50257 -> 50304 for GPT-2's vocabulary): matmuls
whose sizes are multiples of 64 run on the tensor cores' fast path. The tokenizer keeps its own size;
the padded rows are never a target, generation suppresses them, and evaluation scores only the
tokenizer's ids.

Every model lmloop builds or loads is made under one lock per process (``CONSTRUCTING``): while
transformers 5 makes a model it swaps functions for the whole process (``PreTrainedModel.tie_weights``
becomes a no-op, torch's init functions and default dtype change). Two models made at once, by two flow
runs in one process's threads, come out with the output layer untied (left on the meta device, or
uninitialised), and the process can keep ``tie_weights`` switched off for good.
"""

from __future__ import annotations

import threading
from os import PathLike

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

VOCAB_MULTIPLE = 64
CONSTRUCTING = threading.RLock()  # re-entrant: a load inside a block that holds it


def load_pretrained(auto_class: type, path: str | PathLike[str], **kwargs) -> PreTrainedModel:
    """``auto_class.from_pretrained(path, **kwargs)`` under ``CONSTRUCTING``: a local folder, no hub, weights
    from safetensors only (``use_safetensors=False`` is the caller's explicit opt-in), never remote code."""
    kwargs.setdefault("use_safetensors", True)
    kwargs["trust_remote_code"] = False
    with CONSTRUCTING:
        return auto_class.from_pretrained(str(path), **kwargs)


def padded_vocab(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """``vocab_size`` rounded up to a multiple of ``multiple``."""
    return -(-vocab_size // multiple) * multiple


def build_causal_lm(
    architecture: str,
    vocab_size: int,
    n_layer: int,
    *,
    n_embd: int,
    n_head: int,
    block_size: int,
    eos_token_id: int,
    intermediate_size: int | None = None,
    dropout: float = 0.0,
) -> PreTrainedModel:
    """A freshly initialised causal LM for a tokenizer of ``vocab_size`` ids (embedding rows padded).
    Flat arguments: configs don't leak into builders."""
    rows = padded_vocab(vocab_size)
    common = {"vocab_size": rows, "bos_token_id": eos_token_id, "eos_token_id": eos_token_id}
    if architecture == "gpt2":
        config = GPT2Config(
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            n_positions=block_size,
            n_inner=intermediate_size,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            pad_token_id=eos_token_id,
            **common,
        )
        with CONSTRUCTING:
            model: PreTrainedModel = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            hidden_size=n_embd,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=n_head,
            intermediate_size=intermediate_size or 256 * ((8 * n_embd // 3 + 255) // 256),
            max_position_embeddings=block_size,
            attention_dropout=dropout,
            tie_word_embeddings=True,
            pad_token_id=eos_token_id,
            **common,
        )
        config._attn_implementation = "sdpa"
        with CONSTRUCTING:
            model = LlamaForCausalLM(config)
    if rows > vocab_size:  # the padding rows exist for speed only: never generated
        model.generation_config.suppress_tokens = list(range(vocab_size, rows))
    return model
