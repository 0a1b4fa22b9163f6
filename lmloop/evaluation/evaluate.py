"""Held-out evaluation: per-document NLL with a sliding window, perplexity, bits per byte, baselines.

Every document is scored on its own, prefixed by the end-of-text token so its first token is
predicted too. Documents longer than the context are scored with overlapping windows: each
token is predicted once, with at least ``block_size - stride`` tokens of context. Per-document
numbers are kept because slices and the promotion gate need them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmloop.core.config import EvalConfig
from lmloop.core.progress import progress
from lmloop.data.sample_data import true_entropy
from lmloop.data.values import Corpus
from lmloop.training.values import Blocks, TrainedModel


@dataclass(frozen=True)
class DocScores:
    """Per-document negative log-likelihood (nats), scored tokens and UTF-8 bytes."""

    nll: np.ndarray
    tokens: np.ndarray
    bytes: np.ndarray

    def perplexity(self) -> float:
        return math.exp(self.nll.sum() / self.tokens.sum())

    def bits_per_byte(self) -> float:
        return float(self.nll.sum() / math.log(2) / self.bytes.sum())

    def nll_per_token(self) -> float:
        return float(self.nll.sum() / self.tokens.sum())


def encode_documents(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """``[eos] + tokens`` per document: eos is context only, every document token is a target."""
    eos = tokenizer.eos_token_id
    return [[eos, *ids] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def sliding_windows(ids: list[int], block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_target)`` windows covering targets ``1..len(ids)-1`` exactly once."""
    windows = []
    scored_to = 1
    begin = 0
    while scored_to < len(ids):
        end = min(begin + block_size, len(ids))
        windows.append((begin, end, max(scored_to, begin + 1)))
        scored_to = end
        # a target needs the token before it as context, so never start past scored_to - 1
        begin = min(begin + stride, scored_to - 1)
    return windows


@torch.inference_mode()
def score_documents(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    block_size: int,
    stride: int | None = None,
    batch_size: int = 32,
) -> DocScores:
    stride = stride or max(1, block_size // 2)
    encoded = encode_documents(texts, tokenizer)
    jobs = [(doc, w) for doc, ids in enumerate(encoded) for w in sliding_windows(ids, block_size, stride)]
    jobs.sort(key=lambda job: job[1][1] - job[1][0])  # similar lengths together: little padding
    nll = np.zeros(len(texts))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    model.eval()
    with progress("evaluate", len(jobs), "windows") as advance:
        for i in range(0, len(jobs), batch_size):
            chunk = jobs[i : i + batch_size]
            width = max(end - begin for _, (begin, end, _) in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (doc, (begin, end, first)) in enumerate(chunk):
                window = torch.tensor(encoded[doc][begin:end])
                input_ids[row, : end - begin] = window
                mask[row, : end - begin] = 1
                labels[row, first - begin : end - begin] = window[first - begin :]
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            losses = F.cross_entropy(
                logits[:, :-1].transpose(1, 2), labels[:, 1:].to(device), ignore_index=-100, reduction="none"
            )
            per_window = losses.sum(dim=1).cpu().numpy()
            for row, (doc, _) in enumerate(chunk):
                nll[doc] += per_window[row]
            advance(len(chunk))
    tokens = np.array([len(ids) - 1 for ids in encoded])
    return DocScores(nll=nll, tokens=tokens, bytes=utf8_lengths(texts))


def utf8_lengths(texts: list[str]) -> np.ndarray:
    return np.array([len(t.encode("utf-8")) for t in texts])


def unigram_scores(train_ids: np.ndarray, texts: list[str], tokenizer: PreTrainedTokenizerBase) -> DocScores:
    """The same documents scored by an add-one-smoothed unigram model of the training tokens."""
    counts = np.bincount(train_ids, minlength=len(tokenizer)).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    encoded = encode_documents(texts, tokenizer)
    nll = np.array([-log_p[ids[1:]].sum() for ids in encoded])
    tokens = np.array([len(ids) - 1 for ids in encoded])
    return DocScores(nll=nll, tokens=tokens, bytes=utf8_lengths(texts))


@torch.inference_mode()
def generate_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    max_new_tokens: int,
    seed: int = 0,
) -> list[dict[str, str]]:
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    samples = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        out = model.generate(
            ids,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            top_k=50,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,  # a document's end ends the sample
        )
        completion = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)  # no <|endoftext|>
        samples.append({"prompt": prompt, "completion": completion})
    return samples


def eval_sample(
    texts: list[str],
    doc_ids: list[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_documents: int | None,
    max_tokens: int | None,
) -> list[int]:
    """Which documents to score: in the order of their content hash (a fixed pseudo-random order, so every
    model and every re-run scores the same ones), as many as fit ``max_documents`` and ``max_tokens``."""
    order = sorted(range(len(texts)), key=lambda i: doc_ids[i])[: max_documents or len(texts)]
    if max_tokens and order:
        lengths = np.array(
            [len(ids) + 1 for ids in tokenizer([texts[i] for i in order], add_special_tokens=False)["input_ids"]]
        )
        order = order[: max(1, int(np.searchsorted(np.cumsum(lengths), max_tokens, side="right")))]
    return sorted(order)


def timed_scores(*args, **kwargs) -> tuple[DocScores, float]:
    """``score_documents`` and its throughput in scored tokens per second."""
    start = time.perf_counter()
    scores = score_documents(*args, **kwargs)
    return scores, float(scores.tokens.sum() / (time.perf_counter() - start))


def slice_metrics(scores: DocScores, keys: list[str | None]) -> dict[str, dict[str, float]]:
    """Perplexity and bits per byte per slice (by source file, label, batch...): a regression on old data shows."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key or "none", []).append(i)
    out = {}
    for key, idx in sorted(groups.items()):
        part = DocScores(scores.nll[idx], scores.tokens[idx], scores.bytes[idx])
        out[key] = {"perplexity": part.perplexity(), "bits_per_byte": part.bits_per_byte(), "documents": len(idx)}
    return out


@torch.inference_mode()
def reference_metrics(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[dict[str, str]], *, max_new_tokens: int
) -> dict[str, float]:
    """Greedy continuations of each ``prompt`` scored against its ``reference`` with sacrebleu (BLEU, chrF)."""
    import sacrebleu

    device = next(model.parameters()).device
    hypotheses = []
    for pair in pairs:
        ids = tokenizer(pair["prompt"], return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        hypotheses.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())
    references = [[p["reference"] for p in pairs]]
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, references).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, references).score,
        "reference_pairs": len(pairs),
    }


def _source_folders(sources: list[str]) -> list[Path]:
    return [p if p.is_dir() else p.parent for p in (Path(s) for s in sources if "://" not in s)]


def _reference_pairs(cfg: EvalConfig, sources: list[str]) -> list[dict[str, str]]:
    candidates = (
        [Path(cfg.references)]
        if cfg.references
        else [f / "_meta" / "references.jsonl" for f in _source_folders(sources)]
    )
    for path in candidates:
        if path.is_file():
            return [json.loads(line) for line in path.open() if line.strip()]
    return []


def _true_entropy_metrics(scores: DocScores, doc_ids: list[str], sources: list[str]) -> dict[str, float]:
    """On ``sample-data`` corpora: the generator's entropy of the very test documents, the floor."""
    truth = true_entropy(doc_ids, _source_folders(sources))
    if truth is None:
        return {}
    bits, mask = truth
    model_bits = scores.nll[mask].sum() / math.log(2) / scores.bytes[mask].sum()
    true_bits = bits / scores.bytes[mask].sum()
    return {
        "true_bits_per_byte": true_bits,
        "model_bits_per_byte_on_generated": model_bits,
        "entropy_gap_bits_per_byte": model_bits - true_bits,
    }


def evaluate(
    trained: TrainedModel, corpus: Corpus, blocks: Blocks, *, cfg: EvalConfig, sources: list[str]
) -> TrainedModel:
    """Test-split perplexity and bits per byte beside a unigram baseline, per slice, beside the true entropy
    when the data came from ``sample-data``, BLEU/chrF when references exist. Writes ``metrics.json`` and
    ``samples.json`` into the model folder; returns the model with its metrics."""
    from transformers import AutoModelForCausalLM

    from lmloop.training.model import load_pretrained
    from lmloop.training.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(trained.dir)
    model = load_pretrained(AutoModelForCausalLM, trained.dir)
    split = corpus.split("test")
    if len(split) == 0:
        from lmloop.core.errors import UserError

        raise UserError(
            f"no test documents in {corpus.root}: the hash split put none of the {corpus.sizes.get('train', 0)} "
            "documents in test; raise data.test_fraction or bring more documents"
        )
    chosen = eval_sample(
        list(split["text"]),
        list(split["doc_id"]),
        tokenizer,
        max_documents=cfg.max_documents,
        max_tokens=cfg.max_tokens,
    )
    test = split.select(chosen)
    texts = list(test["text"])
    scores, tokens_per_second = timed_scores(model, tokenizer, texts, blocks.block_size, cfg.stride, cfg.batch_size)
    train_ids = np.concatenate(blocks.load("train").with_format("numpy")["input_ids"])
    unigram = unigram_scores(train_ids.ravel(), texts, tokenizer)
    metrics = {
        "test_perplexity": scores.perplexity(),
        "test_bits_per_byte": scores.bits_per_byte(),
        "test_nll_per_token": scores.nll_per_token(),
        "unigram_perplexity": unigram.perplexity(),
        "unigram_bits_per_byte": unigram.bits_per_byte(),
        "test_documents": len(texts),
        "test_documents_total": len(split),
        "test_tokens": int(scores.tokens.sum()),
        "eval_tokens_per_second": tokens_per_second,
        **_true_entropy_metrics(scores, list(test["doc_id"]), sources),
    }
    pairs = _reference_pairs(cfg, sources)
    if pairs:
        metrics |= reference_metrics(model, tokenizer, pairs, max_new_tokens=cfg.max_new_tokens)
    slices = {
        "source": slice_metrics(scores, [Path(s).name for s in test["source"]]),
        "label": slice_metrics(scores, list(test["label"])),
    }
    prompts = cfg.prompts or [" ".join(t.split()[:3]) for t in texts[: cfg.samples]]
    samples = generate_samples(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens)
    return trained.with_evaluation(metrics, slices, samples, documents=list(test["doc_id"]))
