"""Causal-LM training: one readable loop, mechanics from Accelerate, crash-safe checkpoints.

Accelerate gives device placement, bf16 autocast on CUDA, gradient accumulation and DDP
(``torchrun`` / ``accelerate launch``) without changing this loop; we keep the loop itself because
resume must restore the exact data position and every tensor without pickles (see
:mod:`lmloop.checkpoint`). On CPU everything stays fp32 (bf16 is ~300x slower on CPUs without
AVX-512). The loss and grad norm are read back to the host only every ``log_every`` steps.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedModel, get_cosine_with_min_lr_schedule_with_warmup

from lmloop.checkpoint import TrainState, latest_valid, load_checkpoint, save_checkpoint
from lmloop.config import TrainConfig
from lmloop.flops import flops_per_token, peak_flops
from lmloop.progress import progress

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
    resumed_from: int
    stopped_early: bool
    best_val_loss: float | None
    mfu: float


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist())

    def __len__(self) -> int:
        return self.size


class _Stop:
    """SIGTERM sets a flag; the loop checkpoints at the next step boundary and stops."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Stop:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, still crash-safe via periodic checkpoints
            self._previous = None
        return self

    def _handle(self, *_: object) -> None:
        self.requested = True

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that logs, checkpoints and saves."""
    return int(os.environ.get("RANK", "0")) == 0


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if cfg.device == "cuda" and not use_cuda:
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Accelerator(
        cpu=not use_cuda, mixed_precision="bf16" if use_cuda else "no", gradient_accumulation_steps=cfg.grad_accum
    )


def make_optimizer(model: PreTrainedModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (fused kernels, CPU and CUDA); no weight decay on biases and norm weights (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), fused=True)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A packed LM batch carries only ``input_ids`` (labels = inputs); a classification batch brings its own."""
    return {"labels": batch["input_ids"], **batch}


@torch.inference_mode()
def validation_loss(model: torch.nn.Module, loader: DataLoader, batches: int, accelerator: Accelerator) -> float:
    model.eval()
    total = torch.zeros((), device=accelerator.device)
    n = 0
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        total += model(**model_inputs(batch)).loss
        n += 1
    model.train()
    return (accelerator.reduce(total, "mean") / max(n, 1)).item()


class Trainer:
    """State of one training run; :meth:`run` is the loop."""

    def __init__(
        self,
        model: PreTrainedModel,
        train_blocks: Dataset,
        cfg: TrainConfig,
        checkpoint_dir: Path | None = None,
        val_blocks: Dataset | None = None,
        log: LogFn | None = None,
    ) -> None:
        if len(train_blocks) < cfg.batch_size:
            raise ValueError(f"only {len(train_blocks)} packed blocks for batch_size {cfg.batch_size}: add data")
        set_seed(cfg.seed)
        self.cfg, self.log, self.checkpoint_dir = cfg, log, checkpoint_dir
        self.accelerator = make_accelerator(cfg)
        self.block = len(train_blocks[0]["input_ids"])
        self.flops_per_token = flops_per_token(model, self.block)
        optimizer = make_optimizer(model, cfg)
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_rate=cfg.min_lr_ratio
        )
        self.sampler = EpochSampler(len(train_blocks), cfg.seed)
        columns = [c for c in ("input_ids", "attention_mask", "labels") if c in train_blocks.column_names]
        loader = DataLoader(
            train_blocks.with_format("torch", columns=columns),
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            drop_last=True,
        )
        self.raw_model = model
        self.model, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            model, optimizer, loader, scheduler
        )
        self.val_loader = None
        if val_blocks is not None and len(val_blocks) and cfg.eval_every:
            val = DataLoader(val_blocks.with_format("torch", columns=columns), batch_size=cfg.batch_size)
            self.val_loader = self.accelerator.prepare(val)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * self.block * self.accelerator.num_processes
        self.state = TrainState(step=0, epoch=0, batch_in_epoch=0, losses=[])
        self.resumed_from = self._resume()

    def _resume(self) -> int:
        checkpoint = latest_valid(self.checkpoint_dir) if self.checkpoint_dir else None
        if checkpoint is None:
            return 0
        self.state = load_checkpoint(checkpoint, self.raw_model, self.optimizer, self.scheduler)
        return self.state.step

    def _save(self) -> None:
        if self.checkpoint_dir is not None and self.accelerator.is_main_process:
            save_checkpoint(
                self.checkpoint_dir,
                self.raw_model,
                self.optimizer,
                self.scheduler,
                self.state,
                self.cfg.keep_checkpoints,
            )
        self.accelerator.wait_for_everyone()

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Batches from the saved data position on, epoch after epoch."""
        epoch, skip = self.state.epoch, self.state.batch_in_epoch
        while True:
            loader = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
            # Accelerate's loader re-seeds the sampler from its own iteration counter on every __iter__,
            # and a skip-loader starts that counter at 0: set it (it forwards to our sampler), or a resumed
            # run replays epoch 0's order.
            loader.set_epoch(epoch)
            for i, batch in enumerate(loader, start=skip + 1):
                self.state = TrainState(self.state.step, epoch, i, self.state.losses)
                yield batch
            epoch, skip = epoch + 1, 0
            self.state = TrainState(self.state.step, epoch, 0, self.state.losses)

    def run(self) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        window_loss = torch.zeros((), device=acc.device)
        window_micro, grad_norm = 0, torch.zeros(())
        best_val, bad_evals, stopped_early = math.inf, 0, False
        peak = peak_flops(acc.device)
        start = window_start = time.perf_counter()
        self.model.train()
        batches = self._batches()
        bar = progress("train", cfg.max_steps, "steps", self.resumed_from) if acc.is_main_process else nullcontext()
        with _Stop() as stop, bar as advance:
            while self.state.step < cfg.max_steps:
                batch = next(batches)
                with acc.accumulate(self.model):
                    loss = self.model(**model_inputs(batch)).loss
                    acc.backward(loss)
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                window_loss += loss.detach()
                window_micro += 1
                if not acc.sync_gradients:
                    continue
                step = self.state.step + 1
                losses = self.state.losses
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    mean_loss = (acc.reduce(window_loss, "mean") / window_micro).item()
                    tokens_per_second = window_micro / cfg.grad_accum * self.tokens_per_step / (now - window_start)
                    losses = [*losses, mean_loss]
                    metrics = {
                        "train_loss": mean_loss,
                        "learning_rate": self.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "tokens_per_second": tokens_per_second,
                        "mfu": self.flops_per_token * tokens_per_second / peak,
                    }
                    if self.val_loader is not None and step % cfg.eval_every == 0:
                        metrics["val_loss"] = validation_loss(self.model, self.val_loader, cfg.eval_batches, acc)
                    if self.log is not None and acc.is_main_process:
                        self.log(metrics, step)
                    window_loss.zero_()
                    window_micro, window_start = 0, time.perf_counter()
                    if "val_loss" in metrics and cfg.early_stopping_patience:
                        improved = metrics["val_loss"] < best_val
                        best_val, bad_evals = min(best_val, metrics["val_loss"]), 0 if improved else bad_evals + 1
                        stopped_early = bad_evals >= cfg.early_stopping_patience
                self.state = TrainState(step, self.state.epoch, self.state.batch_in_epoch, losses)
                if advance is not None:
                    advance(1)
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stop.requested or stopped_early:
                    self._save()
                if stop.requested:
                    raise KeyboardInterrupt(f"SIGTERM: checkpoint saved at step {step}")
                if stopped_early:
                    break
        wall = time.perf_counter() - start
        steps_run = self.state.step - self.resumed_from
        tokens_per_second = steps_run * self.tokens_per_step / wall if wall > 0 else 0.0
        return TrainResult(
            steps=self.state.step,
            tokens=self.state.step * self.tokens_per_step,
            wall_seconds=wall,
            tokens_per_second=tokens_per_second,
            first_loss=self.state.losses[0] if self.state.losses else math.nan,
            final_loss=self.state.losses[-1] if self.state.losses else math.nan,
            device=acc.device.type,
            resumed_from=self.resumed_from,
            stopped_early=stopped_early,
            best_val_loss=None if math.isinf(best_val) else best_val,
            mfu=self.flops_per_token * tokens_per_second / peak,
        )


def train_causal_lm(
    model: PreTrainedModel,
    blocks: Dataset,
    cfg: TrainConfig,
    log: LogFn | None = None,
    checkpoint_dir: Path | None = None,
    val_blocks: Dataset | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.max_steps`` optimizer steps, resuming from ``checkpoint_dir``."""
    return Trainer(model, blocks, cfg, checkpoint_dir, val_blocks, log).run()
