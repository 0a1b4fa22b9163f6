"""Pipeline stages as plain functions: paths and small dicts in, paths and small dicts out.

Prefect tasks wrap these in a few lines; nothing here knows about Prefect. Each stage writes its
output folder (artifact + the numbers that describe it) so a run can be inspected on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from datasets import load_from_disk

from data_checks import validate_frame
from lmloop.config import DataConfig, EvalConfig, ModelConfig, TokenizerConfig, TrainConfig, ValidationConfig
from lmloop.data import ingest, split_by_hash, write_manifest
from lmloop.evaluate import generate_samples, timed_scores, unigram_scores
from lmloop.model import build_causal_lm
from lmloop.packing import pack, tokenize_documents
from lmloop.tokenizer import load_tokenizer, train_bpe
from lmloop.train import LogFn, train_causal_lm


class DataValidationError(RuntimeError):
    """The data gate rejected the input; ``report`` holds the failed expectations."""

    def __init__(self, report: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.report = report


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def ingest_stage(sources: list[str], cfg: DataConfig, out: Path) -> dict[str, Any]:
    dataset, entries = ingest(sources, cfg.text_column, cfg.label_column)
    dataset.save_to_disk(str(out / "dataset"))
    digest = write_manifest(entries, out / "manifest.json")
    return {
        "dataset": str(out / "dataset"),
        "manifest": str(out / "manifest.json"),
        "digest": digest,
        "rows": len(dataset),
        "files": len(entries),
    }


def validation_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Data validation: {'passed' if report['success'] else 'FAILED'}", "", f"Rows: {report['rows']}", ""]
    for failure in report["failures"]:
        lines.append(
            f"- **{failure['expectation']}** ({failure['column'] or 'table'}): {failure['unexpected_count']} rows"
        )
        lines.extend(f"  - `{e['file']}:{e['line']}`: `{e['value']!r}`" for e in failure["examples"])
        if not failure["examples"]:
            lines.append(f"  - observed: `{failure['observed']}`")
    return "\n".join(lines) + "\n"


def validate_stage(dataset_path: str, cfg: ValidationConfig, out: Path) -> dict[str, Any]:
    """Run the GX suite; write ``validation.json`` and ``validation.md``. Raises when the data is rejected."""
    frame = load_from_disk(dataset_path).select_columns(["text", "label", "source", "line"]).to_pandas()
    report = validate_frame(frame, cfg)
    payload = report.to_dict()
    write_json(out / "validation.json", payload)
    (out / "validation.md").write_text(validation_markdown(payload))
    if not report.success:
        raise DataValidationError(payload, report.summary())
    return payload


def split_stage(dataset_path: str, cfg: DataConfig, out: Path) -> dict[str, Any]:
    splits = split_by_hash(load_from_disk(dataset_path), cfg.val_fraction, cfg.test_fraction)
    splits.save_to_disk(str(out / "splits"))
    return {"splits": str(out / "splits"), "sizes": {name: len(ds) for name, ds in splits.items()}}


def tokenizer_stage(splits_path: str, cfg: TokenizerConfig, out: Path) -> dict[str, Any]:
    train = load_from_disk(splits_path)["train"]
    tokenizer = train_bpe(iter(train["text"]), cfg.vocab_size, cfg.min_frequency, out / "tokenizer")
    return {"tokenizer": str(out / "tokenizer"), "vocab_size": len(tokenizer)}


def pack_stage(splits_path: str, tokenizer_path: str, block_size: int, out: Path) -> dict[str, Any]:
    tokenizer = load_tokenizer(tokenizer_path)
    splits = load_from_disk(splits_path)
    sizes = {}
    for name in ("train", "validation"):
        blocks = pack(tokenize_documents(splits[name], tokenizer), block_size)
        blocks.save_to_disk(str(out / "blocks" / name))
        sizes[f"{name}_blocks"] = len(blocks)
    sizes["train_tokens"] = sizes["train_blocks"] * block_size
    return {"blocks": str(out / "blocks"), **sizes}


def pretrain_stage(
    blocks_path: str, tokenizer_path: str, model_cfg: ModelConfig, train_cfg: TrainConfig, out: Path, log: LogFn
) -> dict[str, Any]:
    tokenizer = load_tokenizer(tokenizer_path)
    model = build_causal_lm(
        model_cfg.architecture,
        vocab_size=len(tokenizer),
        n_layer=model_cfg.n_layer,
        n_embd=model_cfg.n_embd,
        n_head=model_cfg.n_head,
        block_size=model_cfg.block_size,
        eos_token_id=tokenizer.eos_token_id,
        intermediate_size=model_cfg.intermediate_size,
        dropout=model_cfg.dropout,
    )
    result = train_causal_lm(model, load_from_disk(str(Path(blocks_path) / "train")), train_cfg, log)
    model_dir = out / "model"
    model.save_pretrained(str(model_dir))  # safetensors
    tokenizer.save_pretrained(str(model_dir))
    summary = {"model_dir": str(model_dir), "parameters": model.num_parameters(), **result.__dict__}
    write_json(model_dir / "train_summary.json", summary)
    return summary


def evaluate_stage(
    model_dir: str, splits_path: str, blocks_path: str, cfg: EvalConfig, block_size: int
) -> dict[str, Any]:
    """Test-split perplexity and bits per byte beside a unigram baseline; writes ``metrics.json`` by the model."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    texts = list(load_from_disk(splits_path)["test"]["text"])
    scores, tokens_per_second = timed_scores(model, tokenizer, texts, block_size, cfg.stride, cfg.batch_size)
    train_ids = np.asarray(load_from_disk(str(Path(blocks_path) / "train")).with_format("numpy")["input_ids"]).ravel()
    unigram = unigram_scores(train_ids, texts, tokenizer)
    metrics = {
        "test_perplexity": scores.perplexity(),
        "test_bits_per_byte": scores.bits_per_byte(),
        "test_nll_per_token": scores.nll_per_token(),
        "unigram_perplexity": unigram.perplexity(),
        "unigram_bits_per_byte": unigram.bits_per_byte(),
        "test_documents": len(texts),
        "test_tokens": int(scores.tokens.sum()),
        "eval_tokens_per_second": tokens_per_second,
    }
    prompts = [" ".join(t.split()[:3]) for t in texts[: cfg.samples]]
    samples = generate_samples(model, tokenizer, prompts, cfg.max_new_tokens)
    write_json(Path(model_dir) / "metrics.json", metrics)
    write_json(Path(model_dir) / "samples.json", samples)
    return {"metrics": metrics, "samples": samples}
