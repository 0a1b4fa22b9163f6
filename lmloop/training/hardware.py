"""Shapes and threads that suit the machine: CPU threads, and a micro-batch that fills the GPU.

The rows per optimizer step (``batch_size x grad_accum``) are the training recipe and never change
here; only how they are cut into micro-batches does. On CUDA the largest power-of-two share of them
whose forward and backward fit the card (with room for AdamW's moments) is found once per model shape
and card, and recorded in ``micro_batch.json`` of the cache folder the caller names.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from lmloop.core.config import TrainConfig

HEADROOM = 0.9  # share of the card's memory a probe may fill: fragmentation and the compiler need the rest


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def omp_threads() -> int | None:
    """``$OMP_NUM_THREADS`` when it is a positive whole number: the machine's owner (a scheduler, a shared
    box, a test runner with one worker per core) has chosen the threads a process gets."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def set_threads(cfg: TrainConfig) -> int:
    """Apply ``train.threads`` (default: ``$OMP_NUM_THREADS`` where set, else physical cores) to torch's
    CPU pool; returns the count used."""
    threads = cfg.threads or omp_threads() or physical_cores()
    torch.set_num_threads(threads)
    return threads


_BACKENDS = ("cudnn", "flash", "efficient", "math")


def attention_kernels(choice: str, device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, SDPA tries ``choice`` first (auto: cuDNN, which PyTorch otherwise ranks last), then the rest."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    first = "cudnn" if choice == "auto" else choice
    names = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
    order = [first, *(b for b in _BACKENDS if b != first)]
    return sdpa_kernel([getattr(SDPBackend, names.get(b, "MATH")) for b in order], set_priority=True)


def candidates(rows: int) -> Iterator[int]:
    """``rows``, then halves of it while they divide evenly, down to 1."""
    micro = rows
    while True:
        yield micro
        if micro % 2 or micro == 1:
            break
        micro //= 2
    if micro != 1:
        yield 1


def fits(step: Callable[[int], None], micro: int, device: torch.device, *, extra_bytes: int) -> bool:
    """Does one forward + backward of ``micro`` rows (plus ``extra_bytes``) stay within the headroom?"""
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        step(micro)
        return torch.cuda.max_memory_allocated(device) + extra_bytes < HEADROOM * total
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def _cache_key(module: torch.nn.Module, block: int, rows: int, *, device: torch.device, how: str) -> str:
    shape = f"{type(module.model).__name__}-{sum(p.numel() for p in module.parameters())}p-{block}t"
    return f"{torch.cuda.get_device_name(device)}|{shape}|{rows}rows|{how}"


def probe_micro_batch(
    run: Callable[..., torch.Tensor],
    module: torch.nn.Module,
    block: int,
    *,
    rows: int,
    how: str,
    cache: Path | None,
) -> int:
    """The largest micro-batch (a power-of-two share of ``rows``) for which ``run`` (the loss module as
    training calls it: compiled or not, under its autocast and attention kernels) trains on this card.
    ``how`` names that setup in the key of the JSON file ``cache`` (None: probed, not kept)."""
    known = json.loads(cache.read_text()) if cache and cache.exists() else {}
    device = next(module.parameters()).device
    key = _cache_key(module, block, rows, device=device, how=how)
    if key in known:
        return int(known[key])
    vocab = module.model.config.vocab_size
    optimizer_bytes = 8 * sum(p.numel() for p in module.parameters() if p.requires_grad)

    def step(micro: int) -> None:
        ids = torch.randint(0, vocab, (micro, block), device=device)
        try:
            run(input_ids=ids).backward()
        finally:
            module.zero_grad(set_to_none=True)

    micro = next((m for m in candidates(rows) if fits(step, m, device, extra_bytes=optimizer_bytes)), 1)
    if cache is None:
        return micro
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({**known, key: micro}, indent=2))
    return micro


def plan_micro_batch(cfg: TrainConfig, probe: Callable[[int], int], cuda: bool) -> tuple[int, int]:
    """``(micro_batch, accumulation steps)`` for ``cfg``'s rows per step; ``probe(rows)`` on CUDA when auto."""
    rows = cfg.batch_size * cfg.grad_accum
    if cfg.micro_batch_size != "auto":
        return cfg.micro_batch_size, rows // cfg.micro_batch_size
    micro = probe(rows) if cuda else cfg.batch_size
    return micro, rows // micro
