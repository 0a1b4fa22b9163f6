"""Fine-tuning a sequence classifier the way classification wants it.

1. Task-adaptive pretraining (:func:`adapt`): causal-LM training continues on the training texts themselves
   (labels unused) before any head exists, so the backbone knows the task's words.
2. :func:`fit`: epochs over the labelled texts in length-bucketed batches padded only to their own longest
   text (short texts waste no compute), a class-weighted loss for skewed classes, the language-modelling loss
   kept on as an auxiliary objective (GPT-1's recipe: it regularises a small labelled set), validation
   macro-F1 after each epoch, early stopping, and the best epoch's weights kept.

Pooling is the backbone's own: the last non-pad token of a causal model, so the registered classifier loads
and predicts with plain transformers."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from lmloop.core.config import FinetuneConfig
from lmloop.core.progress import note, progress
from lmloop.core.stopping import StopRequest


@dataclass(frozen=True)
class Encoded:
    ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def classifier_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A classifier's tokenizer; a decoder checkpoint without a pad token pads with its end-of-text token."""
    from lmloop.training.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def max_length_for(lengths: list[int], limit: int, quantile: float = 0.99) -> int:
    """Sequence length from the data: the ``quantile`` of token lengths (a rare long text is cut), at most
    the model's context."""
    return max(8, min(limit, int(np.ceil(np.quantile(lengths, quantile))) if lengths else limit))


def encode(
    texts: list[str], labels: list[int], tokenizer: PreTrainedTokenizerBase, *, limit: int, special: bool = False
) -> Encoded:
    """Token ids cut at ``limit``. ``special``: with the tokenizer's own special tokens (an encoder's
    ``[CLS] ... [SEP]``, the first of which it pools), kept through the cut; decoders pool their last token
    and take the text alone."""
    if special:
        ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
    else:
        ids = [row[:limit] for row in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return Encoded([row or [tokenizer.pad_token_id] for row in ids], np.asarray(labels, dtype=np.int64))


def buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Batches of similar lengths. With ``rng`` (training): texts shuffled, sorted by length within windows of
    50 batches, and the batches shuffled; without: sorted by length (prediction)."""
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = rng.permutation(len(lengths))
        window = batch_size * 50
        order = np.concatenate(
            [w[np.argsort(lengths[w], kind="stable")] for w in np.split(order, range(window, len(order), window))]
        )
    out = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(out)
    return out


def device_for(cfg: FinetuneConfig) -> torch.device:
    """The GPU when there is one (``finetune.device``: auto/cpu/cuda, chosen as for the LM stages), else the
    CPU. A plain device, not an Accelerator: the classifier's loop is single-process."""
    from lmloop.training.mechanics import wants_cuda

    return torch.device("cuda" if wants_cuda(cfg) else "cpu")


CPU = torch.device("cpu")


def collate(data: Encoded, index: np.ndarray, pad_id: int, device: torch.device = CPU) -> dict[str, torch.Tensor]:
    """Right-padded to the batch's own longest text."""
    rows = [data.ids[i] for i in index]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _stepper(
    model: torch.nn.Module, lr: float, cfg: FinetuneConfig, *, warmup: int, total: int
) -> Callable[[torch.Tensor], None]:
    """AdamW with ``warmup`` steps of linear warm-up, then linear decay to ``total``; the function it returns
    takes one clipped optimizer step on a loss. TAPT and the head train with the same mechanics."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, warmup), total)

    def step(loss: torch.Tensor) -> None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def adapt(
    backbone_dir: str,
    texts: Encoded,
    eos_id: int,
    *,
    block_size: int,
    cfg: FinetuneConfig,
    out: Path,
    log: Callable[[dict[str, float], int], None] | None = None,
) -> tuple[str, int]:
    """Task-adaptive pretraining: ``cfg.tapt_epochs`` passes of causal-LM training over ``texts`` (each text
    after an end-of-text token, packed into ``block_size`` blocks as in pretraining), saved to ``out``.
    Returns the folder to build the classifier from and the optimizer steps taken."""
    if cfg.tapt_epochs == 0 or not len(texts):
        return backbone_dir, 0
    from transformers import AutoModelForCausalLM

    from lmloop.training.model import load_pretrained

    torch.manual_seed(cfg.seed)
    stream = np.fromiter((t for row in texts.ids for t in (eos_id, *row)), dtype=np.int64)
    width = min(block_size, len(stream))
    blocks = torch.from_numpy(stream[: len(stream) // width * width].reshape(-1, width))
    device = device_for(cfg)
    model = load_pretrained(AutoModelForCausalLM, backbone_dir).to(device)
    model.train()
    per_epoch = math.ceil(len(blocks) / cfg.batch_size)
    planned = per_epoch * cfg.tapt_epochs
    optimize = _stepper(model, cfg.tapt_learning_rate, cfg, warmup=planned // 10, total=planned)
    step = 0
    with StopRequest() as stop, progress("task-adaptive pretraining", planned) as advance:
        for epoch in range(cfg.tapt_epochs):
            total = 0.0
            for index in torch.randperm(len(blocks)).split(cfg.batch_size):
                batch = blocks[index].to(device)
                loss = model(input_ids=batch, labels=batch).loss
                optimize(loss)
                total, step = total + loss.item(), step + 1
                advance(1)
                stop.check(f"in task-adaptive pretraining, epoch {epoch + 1} (a classifier is not resumed: rerun it)")
            note(f"task-adaptive pretraining: epoch {epoch + 1}/{cfg.tapt_epochs}, LM loss {total / per_epoch:.3f}")
            if log is not None:
                log({"tapt_loss": total / per_epoch}, step)
    model.save_pretrained(str(out))
    return str(out), step


def _logits(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], lm_weight: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class logits and, with ``lm_weight``, the next-token loss on the same forward pass (the output
    embedding is the input one: lmloop's models tie them). Pooling as the model's own forward does it: the
    last token of each right-padded text."""
    if lm_weight == 0:
        return model(**batch).logits, None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA: the wrapped model
    hidden = getattr(base, base.base_model_prefix)(**batch).last_hidden_state
    mask = batch["attention_mask"]
    logits = base.score(hidden[torch.arange(len(mask), device=mask.device), mask.sum(1) - 1])
    if hidden.shape[1] < 2:
        return logits, None
    lm = hidden[:, :-1] @ base.get_input_embeddings().weight.T
    target = batch["input_ids"][:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return logits, F.cross_entropy(lm.reshape(-1, lm.shape[-1]), target.reshape(-1), ignore_index=-100)


def class_weights(labels: np.ndarray, classes: int) -> torch.Tensor:
    """Inverse square-root frequency, mean 1: rare classes count more without swamping the loss."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.sum() / (classes * np.maximum(counts, 1))) ** 0.5, 1.0)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def best_epoch(scores: list[float], patience: int) -> tuple[int, bool]:
    """The epoch to keep (the first with the best score) and whether to stop now (``patience`` epochs
    without a better one)."""
    best = int(np.argmax(scores))
    return best, len(scores) - 1 - best >= patience


@torch.inference_mode()
def predict(model: PreTrainedModel, data: Encoded, pad_id: int, *, batch_size: int = 64) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros(len(data), dtype=np.int64)
    lengths = np.array([len(r) for r in data.ids])
    for index in buckets(lengths, batch_size):
        out[index] = model(**collate(data, index, pad_id, device)).logits.argmax(-1).cpu().numpy()
    return out


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def epoch_line(history: list[dict[str, float]], *, best: int, stop_now: bool, epochs: int, patience: int) -> str:
    """One epoch's news: its losses, its validation macro-F1, and where early stopping stands."""
    last = history[-1]
    line = f"classifier epoch {int(last['epoch'])}/{epochs}: train loss {last['train_loss']:.3f}"
    if "val_macro_f1" not in last:
        return line
    line += f", validation macro-F1 {last['val_macro_f1']:.3f} (best {history[best]['val_macro_f1']:.3f} at epoch {best + 1}"
    waited = len(history) - 1 - best
    if stop_now:
        return line + f"; no gain for {waited} epochs: stopping, keeping epoch {best + 1})"
    return line + (f"; {patience - waited} more without gain stops it)" if waited else ")")


def fit(
    model: PreTrainedModel,
    train: Encoded,
    validation: Encoded,
    *,
    cfg: FinetuneConfig,
    classes: int,
    pad_id: int,
    log: Callable[[dict[str, float], int], None] | None = None,
    first_step: int = 0,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train for up to ``cfg.epochs`` epochs (peak ``learning_rate``, default ``cfg.classifier_learning_rate``), keep the epoch with the best validation macro-F1 (the last one
    when there is no validation split). Returns the history and the summary figures."""
    torch.manual_seed(cfg.seed)
    learning_rate = learning_rate or cfg.classifier_learning_rate
    device = device_for(cfg)
    model.to(device)
    rng = np.random.default_rng(cfg.seed)
    lengths = np.array([len(r) for r in train.ids])
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    optimize = _stepper(model, learning_rate, cfg, warmup=steps_per_epoch // 10, total=steps_per_epoch * cfg.epochs)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(train.labels, classes).to(device))
    history: list[dict[str, float]] = []
    from lmloop.training.bases import is_encoder

    tied = getattr(model.config, "tie_word_embeddings", False) and not is_encoder(model.config.model_type)
    lm_weight = cfg.classifier_lm_weight if tied else 0.0  # an untied output embedding is not in the classifier
    best_state, step, start, tokens = None, 0, time.perf_counter(), 0
    with StopRequest() as stop, progress("classifier", steps_per_epoch * cfg.epochs) as advance:
        for epoch in range(cfg.epochs):
            model.train()
            total = lm_total = 0.0
            for index in buckets(lengths, cfg.batch_size, rng):
                batch = collate(train, index, pad_id, device)
                logits, lm_loss = _logits(model, batch, lm_weight)
                loss = loss_fn(logits, torch.from_numpy(train.labels[index]).to(device))
                total += loss.item()
                if lm_loss is not None:
                    lm_total += lm_loss.item()
                    loss = loss + lm_weight * lm_loss
                optimize(loss)
                step, tokens = step + 1, tokens + int(batch["attention_mask"].sum())
                advance(1)
                stop.check(f"at epoch {epoch + 1}, step {step} (a classifier is not resumed: rerun it)")
            val = scores(validation.labels, predict(model, validation, pad_id)) if len(validation) else {}
            losses = {"train_loss": total / steps_per_epoch}  # the classification loss alone
            if lm_weight:
                losses["train_lm_loss"] = lm_total / steps_per_epoch
            history.append({"epoch": epoch + 1, **losses, **{f"val_{k}": v for k, v in val.items()}})
            if log is not None:
                log({k: v for k, v in history[-1].items() if k != "epoch"}, first_step + step)
            best, stop_now = best_epoch([h.get("val_macro_f1", h["epoch"]) for h in history], cfg.patience)
            if best == epoch:
                best_state = copy.deepcopy(model.state_dict())
            note(epoch_line(history, best=best, stop_now=stop_now, epochs=cfg.epochs, patience=cfg.patience))
            if stop_now:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    wall = time.perf_counter() - start
    return {
        "history": history,
        "best_epoch": best + 1,
        "epochs_run": len(history),
        "train_tokens_per_second": tokens / wall if wall > 0 else 0.0,
        "train_final_loss": history[-1]["train_loss"],
    }
