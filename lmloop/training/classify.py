"""Sequence classification on a pretrained lmloop backbone, its metrics and its baseline.

The classic recipe: a classification head on the pretrained transformer, fine-tuned on labelled
text; optionally LoRA (peft), merged back before registering so the registered model loads and
predicts like any transformers classifier. Baseline on the same split: TF-IDF + logistic regression.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from lmloop.core.config import FinetuneConfig
from lmloop.data.values import Corpus
from lmloop.training.baseline import (
    Rows,
    accuracy_difference_ci,
    classification_metrics,
    plot_confusion,
    tfidf_baseline,
)
from lmloop.training.model import load_pretrained
from lmloop.training.values import BaseModelRef, TrainedModel

HEADS = ("classifier", "score", "lm_head", "pooler", "cls", "qa_outputs")


def lora_targets(model: torch.nn.Module) -> list[str]:
    """The names (last component) of the architecture's linear layers, found from the model itself (its
    ``nn.Linear`` and GPT-2's ``Conv1D``), heads and pooler excepted: any transformers checkpoint, no fixed
    list of names per architecture."""
    from transformers.pytorch_utils import Conv1D

    names = set()
    for path, module in model.named_modules():
        parts = path.split(".")
        if isinstance(module, (torch.nn.Linear, Conv1D)) and not set(parts) & set(HEADS):
            names.add(parts[-1])
    if not names:
        raise ValueError(f"{type(model).__name__}: no linear layers for LoRA adapters")
    return sorted(names)


def label_map(labels: list[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(sorted(set(labels)))}


def build_classifier(
    backbone_dir: str, labels: dict[str, int], pad_token_id: int, *, lora: bool, safe_only: bool = True
) -> PreTrainedModel:
    """A classification head on the pretrained backbone; with ``lora`` only adapters (and the head) train.
    ``safe_only=False``: the base's weights are pickles and the user opted in."""
    model = load_pretrained(
        AutoModelForSequenceClassification,
        backbone_dir,
        use_safetensors=True if safe_only else None,
        num_labels=len(labels),
        id2label={i: label for label, i in labels.items()},
        label2id=labels,
        pad_token_id=pad_token_id,
    )
    if not lora:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=lora_targets(model),
    )
    return get_peft_model(model, config)


def merge_lora(model: torch.nn.Module) -> PreTrainedModel:
    """Fold LoRA adapters into the base weights: the saved model needs no peft to load."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@torch.inference_mode()
def embed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    max_length: int,
    batch_size: int = 32,
) -> np.ndarray:
    """Mean-pooled last hidden state of each document (first ``max_length`` tokens)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True)
        ids = torch.tensor(enc["input_ids"], device=device)
        mask = torch.tensor(enc["attention_mask"], device=device)
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1].float()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        out.append(pooled.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def probe_metrics(features: np.ndarray, labels: list[str], folds: int = 5, *, seed: int = 0) -> dict[str, Any]:
    """How linearly separable the classes are in a model's features: logistic regression, stratified
    k-fold cross-validated predictions on every document. The same folds for every model compared."""
    values, counts = np.unique(labels, return_counts=True)
    kept = [str(v) for v, c in zip(values, counts, strict=True) if c >= 2]  # a class of one cannot be held out
    if len(kept) < 2:
        raise ValueError(
            f"a probe needs 2+ classes with 2+ documents each, got {dict(zip(values.tolist(), counts.tolist(), strict=True))}"
        )
    rows = np.array([label in kept for label in labels])
    features, index = features[rows], label_map(kept)
    y = np.array([index[label] for label, keep in zip(labels, rows, strict=True) if keep])
    folds = min(folds, int(np.bincount(y).min()))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scaled = (features - features.mean(0)) / (features.std(0) + 1e-6)
    pred = cross_val_predict(LogisticRegression(max_iter=2000), scaled, y, cv=cv)
    return classification_metrics(y, pred, kept)


def write_test_rows(rows: Rows, path: Path) -> Path:
    """The rows a classifier was scored on, for a later gate to score the next one on the same rows."""
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    return path


def classifier_rows(corpus: Corpus, test: Corpus | None) -> dict[str, Rows]:
    """(text, label) rows per split. With a team's own ``test`` corpus (cleaned by the same gate), the test
    rows are exactly its rows and the training pool (the corpus's train and test splits for training, its
    validation split for validation) holds none of its documents."""

    def rows(ds: Any, drop: set[str] = frozenset()) -> Rows:  # type: ignore[assignment]
        return [(t, lab) for t, lab, d in zip(ds["text"], ds["label"], ds["doc_id"], strict=True) if d not in drop]

    if test is None:
        return {name: rows(corpus.split(name)) for name in ("train", "validation", "test")}
    held = test.load()
    drop = set(held["doc_id"])
    return {
        "train": rows(corpus.split("train"), drop) + rows(corpus.split("test"), drop),
        "validation": rows(corpus.split("validation"), drop),
        "test": rows(held),
    }


def train_classifier(
    corpus: Corpus,
    base: BaseModelRef,
    *,
    train_cfg: FinetuneConfig,
    lora: bool,
    out: Path,
    log: Any = None,
    test: Corpus | None = None,
) -> TrainedModel:
    """Fine-tune a classification head on ``base`` (epochs, early stopping on validation macro-F1, see
    :mod:`lmloop.training.classifier_training`); test accuracy/macro-F1 beside TF-IDF + LR on the same rows, with a
    paired-bootstrap 95% CI of the accuracy difference. ``test``: the team's own test set."""
    from accelerate.utils import set_seed

    from lmloop.core.files import write_json
    from lmloop.training.classifier_training import adapt, classifier_tokenizer, encode, fit, max_length_for, predict

    tokenizer = classifier_tokenizer(base.tokenizer_dir)
    splits = classifier_rows(corpus, test)
    labels = label_map([lab for _, lab in splits["train"] if lab is not None])
    if len(labels) < 2:
        raise ValueError(f"classification needs at least 2 labels in the training split, found {sorted(labels)}")
    known = {name: [(t, lab) for t, lab in rows if lab in labels] for name, rows in splits.items()}
    special = base.encoder
    texts = [t for t, _ in known["train"]]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]]
    limit = max_length_for(lengths, base.block_size)
    encoded = {  # training rows cut at the data's length; the others scored as served (whole context)
        name: encode(
            [t for t, _ in rows],
            [labels[lab] for _, lab in rows],
            tokenizer,
            limit=limit if name == "train" else base.block_size,
            special=special,
        )
        for name, rows in known.items()
    }
    set_seed(train_cfg.seed)
    backbone, steps = base.dir, 0
    if not base.encoder:  # task-adaptive pretraining is causal-LM training: decoders only
        backbone, steps = adapt(
            base.dir,
            encoded["train"],
            tokenizer.eos_token_id,
            block_size=base.block_size,
            cfg=train_cfg,
            out=out / "adapted",
            log=log,
        )
    pickles = bool(base.pretrained and base.pretrained.pickle_weights)
    model = build_classifier(backbone, labels, tokenizer.pad_token_id, lora=lora, safe_only=not pickles)
    rate = train_cfg.pretrained_classifier_learning_rate if base.pretrained else None
    summary = fit(
        model,
        encoded["train"],
        encoded["validation"],
        cfg=train_cfg,
        classes=len(labels),
        pad_id=tokenizer.pad_token_id,
        log=log,
        first_step=steps,
        learning_rate=rate,
    )
    model = merge_lora(model)
    model_dir = out / "classifier"
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    names = sorted(labels, key=labels.get)
    y_true, y_pred = encoded["test"].labels, predict(model, encoded["test"], tokenizer.pad_token_id)
    baseline, baseline_c = tfidf_baseline(known["train"], known["test"], labels, validation=known["validation"])
    model_scores, base_scores = (classification_metrics(y_true, p, names) for p in (y_pred, baseline))
    low, high = accuracy_difference_ci(y_true, y_pred, baseline)
    metrics = {
        "accuracy": model_scores["accuracy"],
        "macro_f1": model_scores["macro_f1"],
        "baseline_accuracy": base_scores["accuracy"],
        "baseline_macro_f1": base_scores["macro_f1"],
        "accuracy_difference_ci95_low": low,
        "accuracy_difference_ci95_high": high,
        "test_documents": int(len(y_true)),
        "baseline_c": baseline_c,
        "max_length": limit,
        "tapt_steps": steps,
        **{k: summary[k] for k in ("best_epoch", "epochs_run", "train_tokens_per_second", "train_final_loss")},
    }
    reports = {
        "report": model_scores["report"],
        "baseline_report": base_scores["report"],
        "history": summary["history"],
    }
    write_json(model_dir / "metrics.json", {**metrics, **reports, "test_source": "team" if test else "split"})
    write_test_rows(known["test"], out / "classifier_test_rows.jsonl")  # the rows a later gate compares on
    plot_confusion(y_true, y_pred, names, path=model_dir / "confusion_matrix.png")
    return TrainedModel(dir=str(model_dir), metrics=metrics, labels=names)
