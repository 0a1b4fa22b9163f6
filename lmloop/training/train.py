"""Causal-LM training: one readable loop, mechanics from Accelerate, crash-safe checkpoints.

Accelerate gives device placement, bf16 autocast on CUDA, gradient accumulation and DDP
(``torchrun`` / ``accelerate launch``) without changing this loop; we keep the loop itself because
resume must restore the exact data position and every tensor without pickles (see
:mod:`lmloop.training.checkpoint`). On CPU everything stays fp32 (bf16 is ~300x slower on CPUs without
AVX-512). The loss and grad norm are read back to the host only every ``log_every`` steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast, set_seed
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, get_cosine_with_min_lr_schedule_with_warmup

from lmloop.core.config import TrainConfig
from lmloop.core.progress import progress
from lmloop.training.checkpoint import TrainState, latest_valid, load_checkpoint, save_checkpoint
from lmloop.training.flops import Utilisation
from lmloop.training.fused_loss import CausalLMLoss
from lmloop.training.hardware import attention_kernels, plan_micro_batch, probe_micro_batch, set_threads
from lmloop.training.mechanics import (
    EpochSampler,
    StopRequest,
    as_torch,
    autocast,
    columns_of,
    make_accelerator,
    make_optimizer,
)

if TYPE_CHECKING:
    from datasets import Dataset

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
    mfu_measured_peak: float | None  # None when the run beat the measured peak (unreliable)
    mfu_datasheet: float | None
    devices: int  # the processes (one device each) the MFU figures are over
    micro_batch_size: int
    grad_accum: int
    threads: int


@torch.inference_mode()
def validation_loss(model: torch.nn.Module, loader: DataLoader, batches: int, *, accelerator: Accelerator) -> float:
    """Mean loss of the first ``batches`` validation batches; ``model`` returns the loss of a batch."""
    model.eval()
    total = torch.zeros((), device=accelerator.device)
    n = 0
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        with autocast(accelerator.device):
            total += model(**batch)
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
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where the measured peak FLOP/s and the probed micro-batch are kept (None: not kept)."""
        set_seed(cfg.seed)
        self.cfg, self.log, self.checkpoint_dir, self.cache_dir = cfg, log, checkpoint_dir, cache_dir
        self.accelerator = acc = make_accelerator(cfg)
        cuda = acc.device.type == "cuda"
        self.threads = torch.get_num_threads() if cuda else set_threads(cfg)
        self.block = len(train_blocks[0]["input_ids"])
        peaks = cache_dir and cache_dir / "peak_flops.json"
        self.utilisation = Utilisation(model, self.block, acc.device, cache=peaks, devices=acc.num_processes)
        self.kernels = lambda: attention_kernels(cfg.attention, acc.device)
        loss_module = CausalLMLoss(model, cfg.chunked_loss, torch.bfloat16 if cuda else None).to(acc.device)
        # one process: compile first, so the probe measures the very graph that then trains (no recompile)
        early = cfg.compile and acc.num_processes == 1 and not loss_module.chunked
        runner = torch.compile(loss_module, dynamic=False) if early else loss_module
        columns = columns_of(train_blocks)
        probe_fits = cuda and columns == ["input_ids"]  # packed LM blocks: random ids stand in for them
        self.micro, self.accum = plan_micro_batch(cfg, lambda rows: self._probe(runner, loss_module, rows), probe_fits)
        set_seed(cfg.seed)  # the probe drew random numbers: training starts from the seed's state either way
        if len(train_blocks) < self.micro:
            raise ValueError(f"only {len(train_blocks)} packed blocks for a micro-batch of {self.micro}: add data")
        optimizer = make_optimizer(model, cfg)
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_rate=cfg.min_lr_ratio
        )
        self.sampler = EpochSampler(len(train_blocks), cfg.seed)
        loader = DataLoader(
            as_torch(train_blocks, columns),
            batch_size=self.micro,
            sampler=self.sampler,
            drop_last=True,
            pin_memory=cuda,
        )
        if cfg.compile and loss_module.chunked:
            model.base_model.compile()  # the chunked head + loss compiles per chunk (lmloop.fused_loss)
        self.raw_model = model
        prepared, self.optimizer, self.loader, self.scheduler = acc.prepare(loss_module, optimizer, loader, scheduler)
        self.val_loader = None
        if val_blocks is not None and len(val_blocks) and cfg.eval_every:
            val = DataLoader(as_torch(val_blocks, columns), batch_size=self.micro)
            self.val_loader = acc.prepare(val)
        if early and prepared is loss_module:
            self.model = runner
        else:
            self.model = torch.compile(prepared) if cfg.compile and not loss_module.chunked else prepared
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * self.block * acc.num_processes
        self.state = TrainState(step=0, epoch=0, batch_in_epoch=0, losses=[])
        self.resumed_from = self._resume()
        self.saved_at = time.perf_counter()  # time-based checkpoints count from the start

    def _probe(self, run: torch.nn.Module, module: CausalLMLoss, rows: int) -> int:
        """The largest micro-batch that fits; the smallest of all ranks' answers under DDP."""
        acc = self.accelerator
        how = f"compiled={run is not module}|chunked={module.chunked}|attention={self.cfg.attention}"

        def call(**batch: torch.Tensor) -> torch.Tensor:
            with autocast(acc.device), self.kernels():
                return run(**batch)

        micro = probe_micro_batch(
            call, module, self.block, rows=rows, how=how, cache=self.cache_dir and self.cache_dir / "micro_batch.json"
        )
        if acc.num_processes > 1:
            micro = int(acc.gather(torch.tensor([micro], device=acc.device)).min())
        return micro

    def _resume(self) -> int:
        checkpoint = latest_valid(self.checkpoint_dir) if self.checkpoint_dir else None
        if checkpoint is None:
            return 0
        self.state = load_checkpoint(checkpoint, self.raw_model, self.optimizer, scheduler=self.scheduler)
        return self.state.step

    def _checkpoint_due(self) -> bool:
        """``train.checkpoint_minutes`` passed since the last save (every rank agrees: rank 0's clock decides)."""
        due = torch.tensor([time.perf_counter() - self.saved_at >= self.cfg.checkpoint_minutes * 60])
        if self.accelerator.num_processes > 1:
            due = broadcast(due.to(self.accelerator.device)).cpu()
        return bool(due.item())

    def _save(self) -> None:
        self.saved_at = time.perf_counter()
        if self.checkpoint_dir is not None and self.accelerator.is_main_process:
            save_checkpoint(
                self.checkpoint_dir,
                self.raw_model,
                self.optimizer,
                scheduler=self.scheduler,
                state=self.state,
                keep_last=self.cfg.keep_checkpoints,
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

    def _step(self, batches: Iterator[dict[str, torch.Tensor]], window_loss: torch.Tensor) -> torch.Tensor:
        """One optimizer step over ``accum`` micro-batches: gradients all-reduced on the last one only,
        then one clip, step and zero_grad. Nothing here waits for the GPU."""
        acc = self.accelerator
        for micro in range(self.accum):
            batch = next(batches)
            last = micro == self.accum - 1
            with nullcontext() if last else acc.no_sync(self.model):
                with autocast(acc.device), self.kernels():
                    loss = self.model(**batch)
                acc.backward(loss / self.accum)
            window_loss += loss.detach()
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _metrics(self, window_loss: torch.Tensor, steps: int, seconds: float, *, grad_norm: torch.Tensor, step: int):
        """The numbers logged every ``log_every`` steps (the only place the loss is read back)."""
        cfg, acc = self.cfg, self.accelerator
        tokens_per_second = steps * self.tokens_per_step / seconds
        metrics = {
            "train_loss": (acc.reduce(window_loss, "mean") / (steps * self.accum)).item(),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "tokens_per_second": tokens_per_second,
            **self.utilisation(tokens_per_second),
        }
        if self.val_loader is not None and step % cfg.eval_every == 0:
            metrics["val_loss"] = validation_loss(self.model, self.val_loader, cfg.eval_batches, accelerator=acc)
        return metrics

    def run(self) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        window_loss = torch.zeros((), device=acc.device)
        window_steps, grad_norm = 0, torch.zeros(())
        best_val, bad_evals, stopped_early = math.inf, 0, False
        start = window_start = time.perf_counter()
        self.model.train()
        batches = self._batches()
        bar = (
            progress("train", cfg.max_steps, "steps", completed=self.resumed_from)
            if acc.is_main_process
            else nullcontext()
        )
        with StopRequest() as stop, bar as advance:
            while self.state.step < cfg.max_steps:
                grad_norm = self._step(batches, window_loss)
                window_steps += 1
                step = self.state.step + 1
                losses = self.state.losses
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    metrics = self._metrics(
                        window_loss, window_steps, time.perf_counter() - window_start, grad_norm=grad_norm, step=step
                    )
                    losses = [*losses, metrics["train_loss"]]
                    if self.log is not None and acc.is_main_process:
                        self.log(metrics, step)
                    window_loss.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                    if "val_loss" in metrics and cfg.early_stopping_patience:
                        improved = metrics["val_loss"] < best_val
                        best_val, bad_evals = min(best_val, metrics["val_loss"]), 0 if improved else bad_evals + 1
                        stopped_early = bad_evals >= cfg.early_stopping_patience
                self.state = TrainState(step, self.state.epoch, self.state.batch_in_epoch, losses)
                if advance is not None:
                    advance(1)
                due = step % cfg.log_every == 0 and self._checkpoint_due()
                if step % cfg.checkpoint_every == 0 or due or step == cfg.max_steps or stop.requested or stopped_early:
                    self._save()
                stop.check(f"with a checkpoint saved at step {step}")
                if stopped_early:
                    break
        return self._result(time.perf_counter() - start, stopped_early, best_val)

    def _result(self, wall: float, stopped_early: bool, best_val: float) -> TrainResult:
        steps_run = self.state.step - self.resumed_from
        tokens_per_second = steps_run * self.tokens_per_step / wall if wall > 0 else 0.0
        mfu = self.utilisation(tokens_per_second)
        return TrainResult(
            steps=self.state.step,
            tokens=self.state.step * self.tokens_per_step,
            wall_seconds=wall,
            tokens_per_second=tokens_per_second,
            first_loss=self.state.losses[0] if self.state.losses else math.nan,
            final_loss=self.state.losses[-1] if self.state.losses else math.nan,
            device=self.accelerator.device.type,
            resumed_from=self.resumed_from,
            stopped_early=stopped_early,
            best_val_loss=None if math.isinf(best_val) else best_val,
            mfu_measured_peak=mfu.get("mfu_measured_peak"),
            mfu_datasheet=mfu.get("mfu_datasheet"),
            devices=self.accelerator.num_processes,
            micro_batch_size=self.micro,
            grad_accum=self.accum,
            threads=self.threads,
        )


def train_causal_lm(
    model: PreTrainedModel,
    blocks: Dataset,
    cfg: TrainConfig,
    *,
    log: LogFn | None = None,
    checkpoint_dir: Path | None = None,
    val_blocks: Dataset | None = None,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.max_steps`` optimizer steps, resuming from ``checkpoint_dir``."""
    return Trainer(model, blocks, cfg, checkpoint_dir, val_blocks, log, cache_dir).run()
