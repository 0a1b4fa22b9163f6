"""Pipeline stages as plain functions: paths and small dicts in, paths and small dicts out.

Prefect tasks wrap these in a few lines; nothing here knows about Prefect. Each stage writes its
output folder (artifact + the numbers that describe it) so a run can be inspected on disk.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.utils import set_seed
from datasets import load_from_disk

from data_checks import validate_token_lengths
from lmloop import settings
from lmloop.classify import (
    LORA_TARGETS,
    build_classifier,
    classification_metrics,
    encode_labelled,
    label_map,
    merge_lora,
    plot_confusion,
    predict,
    tfidf_baseline,
)
from lmloop.config import DataConfig, EvalConfig, ModelConfig, TokenizerConfig, TrainConfig, ValidationConfig
from lmloop.corpus import DataValidationError, gate, load_corpus, load_split, save_splits, split_index
from lmloop.data import FileReport, ingest_files
from lmloop.evaluate import generate_samples, reference_metrics, slice_metrics, timed_scores, unigram_scores
from lmloop.model import build_causal_lm
from lmloop.packing import pack
from lmloop.sample_data import true_entropy
from lmloop.token_cache import load_tokens, tokenize_shards
from lmloop.tokenizer import load_tokenizer, train_bpe
from lmloop.train import LogFn, Trainer, is_main_process, train_causal_lm

__all__ = ["DataValidationError"]


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def ingest_stage(sources: list[str], data: DataConfig, validation: ValidationConfig, out: Path) -> dict[str, Any]:
    """Read, clean and check every raw file (GX file suite); cached by content hash."""
    reports = ingest_files(sources, data, validation, settings.cache_dir() / "shards")
    write_json(out / "files.json", [asdict(r) for r in reports])
    return {
        "files": len(reports),
        "files_rejected": sum(r.status == "rejected" for r in reports),
        "rows_read": sum(r.rows_read for r in reports),
        "bytes_read": sum(r.size for r in reports),
    }


def gate_stage(data: DataConfig, validation: ValidationConfig, out: Path, batch: str) -> dict[str, Any]:
    """Quarantine rejected files, dedup, drop eval leakage, check the corpus; raises when the data is rejected."""
    reports = [FileReport(**r) for r in json.loads((out / "files.json").read_text())]
    return gate(reports, data, validation, out, settings.quarantine_dir() / batch)


def split_stage(data_dir: str, data: DataConfig) -> dict[str, Any]:
    return save_splits(data_dir, data)


def tokenizer_stage(data_dir: str, cfg: TokenizerConfig, out: Path) -> dict[str, Any]:
    """Train byte-level BPE on the training split, or reuse ``cfg.path``."""
    target = out / "tokenizer"
    if cfg.path:
        shutil.copytree(cfg.path, target, dirs_exist_ok=True)
        return {"tokenizer": str(target), "vocab_size": len(load_tokenizer(target)), "reused": True}
    train = load_split(data_dir, "train").select_columns(["text"])
    texts = (t for batch in train.iter(batch_size=10_000) for t in batch["text"])
    tokenizer = train_bpe(texts, cfg.vocab_size, cfg.min_frequency, target)
    return {"tokenizer": str(target), "vocab_size": len(tokenizer), "reused": False}


def _check_token_lengths(data_dir: str, tokens: Any, validation: ValidationConfig) -> None:
    frame = load_corpus(data_dir).select_columns(["text", "source", "line"]).to_pandas()
    frame["n_tokens"] = np.asarray(tokens["n_tokens"])
    report = validate_token_lengths(frame, validation)
    if not report.success:
        raise DataValidationError(report.to_dict(), report.summary())


def pack_stage(
    data_dir: str, tokenizer_path: str, block_size: int, validation: ValidationConfig, out: Path
) -> dict[str, Any]:
    """Token ids from the content-addressed cache, packed into blocks for train and validation."""
    shards = json.loads((Path(data_dir) / "corpus.json").read_text())["shards"]
    cache = tokenize_shards(shards, tokenizer_path, settings.cache_dir() / "tokens")
    tokens = load_tokens(cache["paths"]).select(np.load(Path(data_dir) / "keep.npy"))
    if validation.max_tokens:
        _check_token_lengths(data_dir, tokens, validation)
    sizes: dict[str, Any] = {"shards_tokenized": cache["tokenized"], "shards_from_cache": cache["cached"]}
    for name in ("train", "validation"):
        blocks = pack(tokens.select(split_index(data_dir, name)).select_columns(["input_ids"]), block_size)
        blocks.save_to_disk(str(out / "blocks" / name))
        sizes[f"{name}_blocks"] = len(blocks)
    sizes["train_tokens"] = sizes["train_blocks"] * block_size
    return {"blocks": str(out / "blocks"), **sizes}


def _causal_lm(tokenizer: Any, model_cfg: ModelConfig, init_from: str | None, lora: bool) -> Any:
    """A new model from config, or warm-started from ``init_from`` (optionally with LoRA adapters)."""
    if init_from is None:
        return build_causal_lm(
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
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(init_from)
    if lora:
        from peft import LoraConfig, TaskType, get_peft_model

        targets = LORA_TARGETS[model.config.model_type]
        model = get_peft_model(
            model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=targets)
        )
    return model


def train_and_save(
    blocks_path: str,
    tokenizer_path: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out: Path,
    log: LogFn | None,
    init_from: str | None = None,
    lora: bool = False,
) -> dict[str, Any]:
    """Build (or warm-start from ``init_from``), train (resuming from ``out/checkpoints``) and, on rank 0,
    save the model. Runs in every data-parallel process when launched by :mod:`lmloop.worker`."""
    tokenizer = load_tokenizer(tokenizer_path)
    set_seed(train_cfg.seed)  # the initial weights too: the same seed must mean the same run
    model = _causal_lm(tokenizer, model_cfg, init_from, lora)
    blocks = Path(blocks_path)
    val = load_from_disk(str(blocks / "validation")) if (blocks / "validation").exists() else None
    result = train_causal_lm(model, load_from_disk(str(blocks / "train")), train_cfg, log, out / "checkpoints", val)
    model = merge_lora(model)
    model_dir = out / "model"
    summary = {"model_dir": str(model_dir), "parameters": model.num_parameters(), **asdict(result)}
    if is_main_process():
        model.save_pretrained(str(model_dir))  # safetensors
        tokenizer.save_pretrained(str(model_dir))
        write_json(model_dir / "train_summary.json", summary)
    return summary


def pretrain_stage(
    blocks_path: str,
    tokenizer_path: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out: Path,
    log: LogFn | None,
    run_id: str | None = None,
    init_from: str | None = None,
    lora: bool = False,
) -> dict[str, Any]:
    """Train in this process, or with ``train.nproc > 1`` in that many torchrun processes (rank 0 logs to ``run_id``)."""
    if train_cfg.nproc == 1:
        return train_and_save(blocks_path, tokenizer_path, model_cfg, train_cfg, out, log, init_from, lora)
    from lmloop.worker import launch

    spec = {
        "blocks": blocks_path,
        "tokenizer": tokenizer_path,
        "model": model_cfg.model_dump(),
        "train": train_cfg.model_dump(),
        "out": str(out),
        "run_id": run_id,
        "init_from": init_from,
        "lora": lora,
    }
    launch(write_json(out / "train_spec.json", spec), train_cfg.nproc)
    return json.loads((out / "model" / "train_summary.json").read_text())


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


def evaluate_stage(
    model_dir: str, data_dir: str, blocks_path: str, cfg: EvalConfig, block_size: int, sources: list[str]
) -> dict[str, Any]:
    """Test-split perplexity and bits per byte beside a unigram baseline, per slice, beside the true entropy
    when the data came from ``sample-data``, BLEU/chrF when references exist. Writes ``metrics.json``."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    test = load_split(data_dir, "test")
    texts = list(test["text"])
    scores, tokens_per_second = timed_scores(model, tokenizer, texts, block_size, cfg.stride, cfg.batch_size)
    train_ids = np.concatenate(load_from_disk(str(Path(blocks_path) / "train")).with_format("numpy")["input_ids"])
    unigram = unigram_scores(train_ids.ravel(), texts, tokenizer)
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
    truth = true_entropy(list(test["doc_id"]), _source_folders(sources))
    if truth is not None:
        bits, mask = truth
        metrics["true_bits_per_byte"] = bits / scores.bytes[mask].sum()
        metrics["model_bits_per_byte_on_generated"] = scores.nll[mask].sum() / math.log(2) / scores.bytes[mask].sum()
        metrics["entropy_gap_bits_per_byte"] = (
            metrics["model_bits_per_byte_on_generated"] - metrics["true_bits_per_byte"]
        )
    pairs = _reference_pairs(cfg, sources)
    if pairs:
        metrics |= reference_metrics(model, tokenizer, pairs, cfg.max_new_tokens)
    slices = {
        "source": slice_metrics(scores, [Path(s).name for s in test["source"]]),
        "label": slice_metrics(scores, list(test["label"])),
    }
    prompts = cfg.prompts or [" ".join(t.split()[:3]) for t in texts[: cfg.samples]]
    samples = generate_samples(model, tokenizer, prompts, cfg.max_new_tokens)
    write_json(Path(model_dir) / "metrics.json", {**metrics, "slices": slices})
    write_json(Path(model_dir) / "samples.json", samples)
    return {"metrics": metrics, "samples": samples, "slices": slices}


def classifier_stage(
    data_dir: str,
    backbone_dir: str,
    tokenizer_path: str,
    train_cfg: TrainConfig,
    max_length: int,
    lora: bool,
    out: Path,
    log: LogFn | None,
) -> dict[str, Any]:
    """Fine-tune a classification head on the backbone; test-split accuracy/macro-F1 beside TF-IDF + LR."""
    tokenizer = load_tokenizer(tokenizer_path)
    splits = {
        name: load_split(data_dir, name).select_columns(["text", "label"]) for name in ("train", "validation", "test")
    }
    labels = label_map([lab for lab in splits["train"]["label"] if lab is not None])
    if len(labels) < 2:
        raise ValueError(f"classification needs at least 2 labels in the training split, found {sorted(labels)}")
    encoded = {name: encode_labelled(ds, tokenizer, labels, max_length) for name, ds in splits.items()}
    set_seed(train_cfg.seed)
    model = build_classifier(backbone_dir, labels, tokenizer.pad_token_id, lora)
    result = Trainer(
        model, encoded["train"], train_cfg, out / "checkpoints-classifier", encoded["validation"], log
    ).run()
    model = merge_lora(model)
    model_dir = out / "classifier"
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    names = sorted(labels, key=labels.get)
    y_true, y_pred = np.asarray(encoded["test"]["labels"]), predict(model, encoded["test"])
    model_scores = classification_metrics(y_true, y_pred, names)
    base_scores = classification_metrics(y_true, tfidf_baseline(splits["train"], splits["test"], labels), names)
    metrics = {
        "accuracy": model_scores["accuracy"],
        "macro_f1": model_scores["macro_f1"],
        "baseline_accuracy": base_scores["accuracy"],
        "baseline_macro_f1": base_scores["macro_f1"],
        "test_documents": int(len(y_true)),
        "train_tokens_per_second": result.tokens_per_second,
        "train_final_loss": result.final_loss,
    }
    write_json(
        model_dir / "metrics.json",
        {**metrics, "report": model_scores["report"], "baseline_report": base_scores["report"]},
    )
    plot_confusion(y_true, y_pred, names, model_dir / "confusion_matrix.png")
    return {"model_dir": str(model_dir), "metrics": metrics, "labels": names}
