"""Model FLOPs per token and the hardware peak they are compared with (MFU)."""

from __future__ import annotations

import json
import time

import torch

from lmloop import settings

# Dense bf16 peaks (FLOP/s) for GPUs we expect; anything else is measured like the CPU.
_GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def flops_per_token(model: torch.nn.Module, block_size: int) -> float:
    """Training FLOPs per token: 6 x non-embedding params + attention (12 x layers x width x context)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    cfg = model.config
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    width = getattr(cfg, "hidden_size", None) or cfg.n_embd
    params = model.num_parameters(exclude_embeddings=True)
    return 6 * params + 12 * layers * width * block_size


def measure_matmul_peak(size: int = 1024, seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    """Achieved FLOP/s of square matmuls on the CPU: the honest 'peak' for CPU MFU."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start)


def peak_flops(device: torch.device) -> float:
    """The device's peak FLOP/s; a CPU's is measured once and cached under ``LMLOOP_HOME/cache``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in _GPU_PEAKS.items():
            if key in name:
                return peak
    cache = settings.cache_dir() / "peak_flops.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    key = f"{device.type}-{torch.get_num_threads()}t"
    if key not in known:
        known[key] = measure_matmul_peak()
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=2))
    return known[key]
