"""Sequence classification on a pretrained lmloop backbone, its metrics and its baseline.

The classic recipe: a classification head on the pretrained transformer, fine-tuned on labelled
text; optionally LoRA (peft), merged back before registering so the registered model loads and
predicts like any transformers classifier. Baseline on the same split: TF-IDF + logistic regression.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from lmloop.config import TrainConfig
from lmloop.contracts import BaseModelRef, Corpus, TrainedModel

LORA_TARGETS = {"llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}


def label_map(labels: list[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(sorted(set(labels)))}


def encode_labelled(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, labels: dict[str, int], max_length: int
) -> Dataset:
    """Rows with a known label -> fixed-length ``input_ids``/``attention_mask`` (right-padded) and ``labels``.
    (Plain calls, not ``Dataset.map``: hashing a closure for its cache prints the closure's bytecode, which
    Prefect's print capture put into the run's log.)"""
    rows = [(t, lab) for t, lab in zip(dataset["text"], dataset["label"], strict=True) if lab in labels]
    enc = tokenizer([t for t, _ in rows], truncation=True, max_length=max_length, padding="max_length")
    return Dataset.from_dict({**enc, "labels": [labels[lab] for _, lab in rows]})


def build_classifier(backbone_dir: str, labels: dict[str, int], pad_token_id: int, lora: bool) -> PreTrainedModel:
    """A classification head on the pretrained backbone; with ``lora`` only adapters (and the head) train."""
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone_dir,
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
        target_modules=LORA_TARGETS[model.config.model_type],
    )
    return get_peft_model(model, config)


def merge_lora(model: torch.nn.Module) -> PreTrainedModel:
    """Fold LoRA adapters into the base weights: the saved model needs no peft to load."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@torch.inference_mode()
def predict(model: PreTrainedModel, encoded: Dataset, batch_size: int = 64) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    data = encoded.with_format("torch", columns=["input_ids", "attention_mask"])
    out = []
    for i in range(0, len(data), batch_size):
        batch = data[i : i + batch_size]
        logits = model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
        ).logits
        out.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and scikit-learn's per-class report."""
    ids = list(range(len(names)))
    report = classification_report(y_true, y_pred, labels=ids, target_names=names, output_dict=True, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "report": report,
    }


@torch.inference_mode()
def embed(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, batch_size: int = 32
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


def probe_metrics(features: np.ndarray, labels: list[str], folds: int = 5, seed: int = 0) -> dict[str, Any]:
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


def tfidf_baseline(train: Dataset, test: Dataset, labels: dict[str, int]) -> np.ndarray:
    """TF-IDF (word 1-2 grams) + logistic regression trained on the same training split."""
    train_rows = [(t, lab) for t, lab in zip(train["text"], train["label"], strict=True) if lab in labels]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform([t for t, _ in train_rows])
    clf = LogisticRegression(max_iter=1000).fit(x_train, [labels[lab] for _, lab in train_rows])
    test_texts = [t for t, lab in zip(test["text"], test["label"], strict=True) if lab in labels]
    return clf.predict(vectorizer.transform(test_texts))


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(names))))
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train_classifier(
    corpus: Corpus,
    base: BaseModelRef,
    *,
    train_cfg: TrainConfig,
    lora: bool,
    out: Path,
    log: Any = None,
    cache: Path | None = None,
) -> TrainedModel:
    """Fine-tune a classification head on ``base``; test-split accuracy/macro-F1 beside TF-IDF + LR.
    Sequences are cut at the base model's context length."""
    from accelerate.utils import set_seed

    from lmloop.contracts import write_json
    from lmloop.tokenizer import load_tokenizer
    from lmloop.train import Trainer

    tokenizer = load_tokenizer(base.tokenizer_dir)
    splits = {name: corpus.split(name).select_columns(["text", "label"]) for name in ("train", "validation", "test")}
    labels = label_map([lab for lab in splits["train"]["label"] if lab is not None])
    if len(labels) < 2:
        raise ValueError(f"classification needs at least 2 labels in the training split, found {sorted(labels)}")
    encoded = {name: encode_labelled(ds, tokenizer, labels, base.model.block_size) for name, ds in splits.items()}
    set_seed(train_cfg.seed)
    model = build_classifier(base.dir, labels, tokenizer.pad_token_id, lora)
    checkpoints = out / "checkpoints-classifier"
    result = Trainer(model, encoded["train"], train_cfg, checkpoints, encoded["validation"], log, cache).run()
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
    reports = {"report": model_scores["report"], "baseline_report": base_scores["report"]}
    write_json(model_dir / "metrics.json", {**metrics, **reports})
    plot_confusion(y_true, y_pred, names, model_dir / "confusion_matrix.png")
    return TrainedModel(dir=str(model_dir), metrics=metrics, labels=names)
