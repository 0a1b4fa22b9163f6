"""Model FLOPs per token and the peaks they are compared with (MFU).

The count is PaLM's / nanoGPT's: 6 x every parameter (the embedding included, once when tied to the
LM head, whose matmul it is) + 12 x layers x width x context for attention. Two peaks: the
datasheet's dense bf16 rate (known GPUs only) and the rate a plain matmul actually reaches on this
device (bf16 on CUDA, fp32 on CPU), measured as the best of several short trials and cached by the caller's choice of file.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

# Dense bf16 peaks (FLOP/s) by the vendors' datasheets.
_DATASHEET = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def flops_per_token(model: torch.nn.Module, block_size: int) -> float:
    """Training FLOPs per token: 6 x all parameters + attention (12 x layers x width x context)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    cfg = model.config
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    width = getattr(cfg, "hidden_size", None) or cfg.n_embd
    return 6 * model.num_parameters() + 12 * layers * width * block_size


def datasheet_peak(device: torch.device) -> float | None:
    """The datasheet's dense bf16 FLOP/s of a known GPU; None for CPUs and unknown cards."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in _DATASHEET.items() if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device, trials: int = 5, seconds: float = 0.2) -> float:
    """Best achieved FLOP/s of square matmuls over ``trials`` short trials (bf16 8192 on CUDA, fp32 1024
    on CPU): a busy moment lowers one trial, not the best of them."""
    cuda = device.type == "cuda"
    size, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    _sync(device)
    best = 0.0
    for _ in range(trials):
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
            _sync(device)
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - start))
    return best


def _key(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda-{torch.cuda.get_device_name(device)}"
    return f"{device.type}-{torch.get_num_threads()}t"


def measured_peak(device: torch.device, cache: Path | None, refresh: bool = False) -> float:
    """This device's measured matmul peak, cached in the JSON file ``cache`` (None: measured, not kept).
    ``refresh`` measures again and keeps the higher figure."""
    if cache is None:
        return measure_matmul_peak(device)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    key = _key(device)
    if key not in known or refresh:
        known[key] = max(known.get(key, 0.0), measure_matmul_peak(device))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=2))
    return known[key]


class Utilisation:
    """MFU of a run on ``devices`` devices: what every process achieved together (``tokens_per_second`` counts
    every rank's tokens) over the peak of all of them, the measured matmul peak's and the datasheet's.

    A run faster than the measured peak says the peak is wrong (a cache measured on a busy machine): it is
    measured once more; when the run still beats it, ``mfu_measured_peak`` is not reported (never a figure
    made to fit), the datasheet's is, and a warning says the measured peak is unreliable."""

    def __init__(
        self, model: torch.nn.Module, block_size: int, device: torch.device, *, cache: Path | None, devices: int = 1
    ) -> None:
        self.per_token = flops_per_token(model, block_size)
        self.device, self.cache, self.devices = device, cache, devices
        self.measured = measured_peak(device, cache)
        self.datasheet = datasheet_peak(device)
        self.remeasured = self.unreliable = False

    def __call__(self, tokens_per_second: float) -> dict[str, float]:
        achieved = self.per_token * tokens_per_second
        if achieved > self.measured * self.devices and not self.remeasured:
            self.measured, self.remeasured = measured_peak(self.device, self.cache, refresh=True), True
        out = {}
        if achieved <= self.measured * self.devices:
            out["mfu_measured_peak"] = achieved / (self.measured * self.devices)
        elif not self.unreliable:
            self.unreliable = True
            logging.getLogger(__name__).warning(
                "the run reached %.3g FLOP/s on %d device(s), above the measured matmul peak of %.3g FLOP/s "
                "each: that peak is unreliable, so mfu_measured_peak is not reported%s",
                achieved,
                self.devices,
                self.measured,
                " (mfu_datasheet is)" if self.datasheet else "",
            )
        if self.datasheet:
            out["mfu_datasheet"] = achieved / (self.datasheet * self.devices)
        return out
