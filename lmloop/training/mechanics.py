"""The training loop's mechanics: data order, stop requests, device and precision, the optimizer.

Kept apart from :mod:`lmloop.training.train` so the loop itself reads top to bottom.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import Sampler
from transformers import PreTrainedModel

from lmloop.core.config import TrainConfig
from lmloop.core.stopping import StopRequest

__all__ = ["StopRequest"]  # the training loop's stop request (lmloop.core.stopping)


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


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that logs, checkpoints and saves."""
    return int(os.environ.get("RANK", "0")) == 0


def wants_cuda(cfg: TrainConfig) -> bool:
    """``device``: ``auto`` takes CUDA when there is one, ``cpu`` never, ``cuda`` always (refused by name on a
    machine without it). The one device choice of every training stage."""
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if cfg.device == "cuda" and not use_cuda:
        raise RuntimeError("device=cuda was asked for (train/finetune.device) but no CUDA device is available")
    return use_cuda


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """Device placement and DDP from Accelerate; accumulation and bf16 autocast are the loop's own (one
    clip/step/zero_grad per optimizer step, and no fp32 copy of the logits on every forward)."""
    use_cuda = wants_cuda(cfg)
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Accelerator(cpu=not use_cuda, dataloader_config=DataLoaderConfiguration(non_blocking=use_cuda))


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; fp32 elsewhere (bf16 is ~300x slower on CPUs without AVX-512)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def as_torch(blocks: Any, columns: list[str]) -> Any:
    """A ``datasets.Dataset`` as torch tensors; any other map-style dataset of dicts as it is."""
    return blocks.with_format("torch", columns=columns) if hasattr(blocks, "with_format") else blocks


def columns_of(blocks: Any) -> list[str]:
    names = blocks.column_names if hasattr(blocks, "column_names") else list(blocks[0])
    return [c for c in ("input_ids", "attention_mask", "labels") if c in names]


def make_optimizer(model: PreTrainedModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (fused kernels, CPU and CUDA); no weight decay on biases and norm weights (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), fused=True)
