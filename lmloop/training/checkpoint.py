"""Atomic, verifiable training checkpoints.

A checkpoint is written to ``step-N.tmp``, every file flushed and fsynced, a ``COMPLETE.json``
marker recording each file's sha256 written last, then the folder is renamed to ``step-N`` and
the parent directory fsynced. Loading picks the newest checkpoint whose marker exists and whose
files still match their hashes, so a kill mid-write or a flipped byte falls back to the previous
good one. Nothing is pickled: every tensor (weights, optimizer moments, RNG) is safetensors, the
rest (optimizer hyper-parameters, scheduler, data position) JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

MARKER = "COMPLETE.json"


@dataclass(frozen=True)
class TrainState:
    """Where training stands, besides the tensors."""

    step: int
    epoch: int
    batch_in_epoch: int
    losses: list[float]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    plain = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss]}
    return tensors, plain


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = plain["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: Any,
    state: TrainState,
    keep_last: int = 2,
) -> Path:
    """Write ``root/step-N`` atomically; prune all but the newest ``keep_last`` complete checkpoints."""
    final = root / f"step-{state.step:08d}"
    tmp = root / f"step-{state.step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(_untie(weights), str(tmp / "model.safetensors"))
    optimizer_tensors, optimizer_plain = _split_optimizer(optimizer.state_dict())
    save_file(optimizer_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(optimizer_plain))
    (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
    rng_tensors, rng_plain = _rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state.__dict__, "rng": rng_plain}))
    files = sorted(p for p in tmp.iterdir())
    for path in files:
        _fsync(path)
    (tmp / MARKER).write_text(json.dumps({p.name: _sha256(p) for p in files}, indent=2))
    _fsync(tmp / MARKER)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    _fsync(root)
    for old in complete_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state dict as tensors (``state.<param>.<name>``) plus JSON (everything else)."""
    tensors, plain_state = {}, {}
    for param, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(param), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain_state}


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, param, name = key.split(".", 2)
        state.setdefault(int(param), {})[name] = tensor
    for param, values in plain["plain_state"].items():
        state.setdefault(int(param), {}).update(values)
    return {"state": state, "param_groups": plain["param_groups"]}


def _untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): store each tensor on its own."""
    seen: dict[int, str] = {}
    out = {}
    for key, tensor in weights.items():
        ptr = tensor.data_ptr()
        out[key] = tensor.clone() if ptr in seen else tensor
        seen.setdefault(ptr, key)
    return out


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints (marker present), oldest first; unfinished ``.tmp`` folders are ignored."""
    if not root.exists():
        return []
    return sorted(
        p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp") and (p / MARKER).exists()
    )


def verify(checkpoint: Path) -> bool:
    """Every file named by the marker exists and matches its sha256."""
    try:
        expected = json.loads((checkpoint / MARKER).read_text())
        return all(_sha256(checkpoint / name) == digest for name, digest in expected.items())
    except (OSError, ValueError):
        return False


def latest_valid(root: Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt ones are skipped (and reported by the caller)."""
    for checkpoint in reversed(complete_checkpoints(root)):
        if verify(checkpoint):
            return checkpoint
    return None


def load_checkpoint(
    checkpoint: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, scheduler: Any
) -> TrainState:
    weights = load_file(str(checkpoint / "model.safetensors"))
    model.load_state_dict(weights)
    plain = json.loads((checkpoint / "optimizer.json").read_text())
    optimizer.load_state_dict(_join_optimizer(load_file(str(checkpoint / "optimizer.safetensors")), plain))
    scheduler.load_state_dict(json.loads((checkpoint / "scheduler.json").read_text()))
    raw = json.loads((checkpoint / "state.json").read_text())
    _set_rng_state(load_file(str(checkpoint / "rng.safetensors")), raw.pop("rng"))
    return TrainState(**raw)
