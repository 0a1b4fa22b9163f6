"""Causal-LM pretraining: one readable loop, mechanics from Accelerate.

Accelerate gives device placement, bf16 autocast on CUDA, gradient accumulation and DDP
(``accelerate launch`` / ``torchrun``) without changing this loop. On CPU everything stays fp32
(bf16 is ~300x slower on CPUs without AVX-512). The loss is read back to the host only every
``log_every`` steps, so the hot path never synchronises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, get_cosine_with_min_lr_schedule_with_warmup

from lmloop.config import TrainConfig

LogFn = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens: int
    wall_seconds: float
    tokens_per_second: float
    first_loss: float
    final_loss: float
    device: str


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if cfg.device == "cuda" and not use_cuda:
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Accelerator(
        cpu=not use_cuda,
        mixed_precision="bf16" if use_cuda else "no",
        gradient_accumulation_steps=cfg.grad_accum,
    )


def make_optimizer(model: PreTrainedModel, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm weights (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), fused=fused)


def make_loader(blocks: Dataset, batch_size: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    data = blocks.with_format("torch", columns=["input_ids"])
    return DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)


def train_causal_lm(model: PreTrainedModel, blocks: Dataset, cfg: TrainConfig, log: LogFn | None = None) -> TrainResult:
    """Train ``model`` in place for ``cfg.max_steps`` optimizer steps on packed ``blocks``."""
    set_seed(cfg.seed)
    accelerator = make_accelerator(cfg)
    if len(blocks) < cfg.batch_size:
        raise ValueError(
            f"only {len(blocks)} packed blocks for batch_size {cfg.batch_size}: add data or shrink the batch"
        )
    optimizer = make_optimizer(model, cfg, fused=accelerator.device.type == "cuda")
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_rate=cfg.min_lr_ratio
    )
    model, optimizer, loader, scheduler = accelerator.prepare(
        model, optimizer, make_loader(blocks, cfg.batch_size, cfg.seed), scheduler
    )
    model.train()
    block_len = len(blocks[0]["input_ids"])
    tokens_per_step = cfg.batch_size * cfg.grad_accum * block_len * accelerator.num_processes
    window_loss = torch.zeros((), device=accelerator.device)
    window_micro = 0
    losses: list[float] = []
    grad_norm = torch.zeros(())
    step = 0
    start = window_start = time.perf_counter()
    while step < cfg.max_steps:
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window_loss += loss.detach()
            window_micro += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                now = time.perf_counter()
                mean_loss = (accelerator.reduce(window_loss, "mean") / window_micro).item()
                steps_in_window = window_micro / cfg.grad_accum
                metrics = {
                    "train_loss": mean_loss,
                    "learning_rate": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "tokens_per_second": steps_in_window * tokens_per_step / (now - window_start),
                }
                losses.append(mean_loss)
                if log is not None and accelerator.is_main_process:
                    log(metrics, step)
                window_loss.zero_()
                window_micro, window_start = 0, now
            if step >= cfg.max_steps:
                break
    wall = time.perf_counter() - start
    accelerator.wait_for_everyone()
    return TrainResult(
        steps=step,
        tokens=step * tokens_per_step,
        wall_seconds=wall,
        tokens_per_second=step * tokens_per_step / wall,
        first_loss=losses[0],
        final_loss=losses[-1],
        device=accelerator.device.type,
    )
