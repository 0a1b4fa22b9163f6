"""The LM head and cross-entropy in chunks, gradients computed in the forward pass.

A causal LM's last step materialises logits of shape tokens x vocabulary (32k x 50k in fp32 is 6.6 GB
for one GPT-2 micro-batch), then the loss reads them again and autograd keeps them for backward. Here
the head and the loss run over ``chunk`` tokens at a time: each chunk's logits live only long enough
to give its loss and the gradients of the hidden states and the head's weight, which are what
backward returns (the approach of Liger's fused linear cross-entropy and llm.c). Each chunk's
arithmetic is one compiled function on CUDA, so the softmax and its gradient fuse into one kernel;
the matmuls stay cuBLAS. The result equals ``F.cross_entropy(hidden @ weight.T, targets)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

IGNORE = -100
ChunkFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def chunk_step(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed loss of one chunk and the gradients of that sum w.r.t. ``hidden`` and ``weight``."""
    logits = (hidden @ weight.T).float()
    valid = targets != IGNORE
    safe = targets.clamp(min=0)
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(1, safe[:, None]).squeeze(1)
    loss = ((lse - picked) * valid).sum()
    grad = torch.softmax(logits, dim=-1)
    grad.scatter_add_(1, safe[:, None], -torch.ones_like(picked)[:, None])
    grad = (grad * valid[:, None]).to(hidden.dtype)
    return loss, grad @ weight, grad.T @ hidden


_compiled: dict[bool, ChunkFn] = {}


def chunk_fn(device: torch.device) -> ChunkFn:
    """``chunk_step``, compiled on CUDA (one fused softmax-gradient kernel), eager elsewhere."""
    if device.type != "cuda":
        return chunk_step
    if True not in _compiled:
        _compiled[True] = torch.compile(chunk_step, dynamic=False)
    return _compiled[True]


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, dtype: torch.dtype
    ) -> torch.Tensor:
        step = chunk_fn(hidden.device)
        h, w = hidden.to(dtype), weight.to(dtype)  # the dtype is explicit: autocast is off in here
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for begin in range(0, h.shape[0], chunk):
            end = min(begin + chunk, h.shape[0])
            loss, gh, gw = step(h[begin:end], w, targets[begin:end])
            total += loss
            grad_h[begin:end] = gh
            grad_w += gw.float()
        count = (targets != IGNORE).sum().clamp(min=1)
        ctx.save_for_backward(grad_h, grad_w, count)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w, count = ctx.saved_tensors
        scale = grad_out / count
        return (grad_h * scale).to(ctx.dtypes[0]), (grad_w * scale).to(ctx.dtypes[1]), None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk: int = 4096,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets`` (``-100`` ignored), chunked.
    ``dtype``: the matmuls' dtype (bf16 on CUDA); the softmax is always fp32."""
    hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    with torch.autocast(hidden.device.type, enabled=False):
        return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk, dtype or hidden.dtype)


def shifted_targets(input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token targets aligned with every position; the last position of each row predicts nothing."""
    return F.pad(input_ids[:, 1:], (0, 1), value=IGNORE)


class CausalLMLoss(torch.nn.Module):
    """``model``'s mean next-token loss on a packed batch; the head and loss chunked when ``chunked``.

    The backbone is the model's own (``base_model``: the transformer with its final norm), so the
    numbers equal ``model(input_ids, labels=input_ids).loss``. A batch that brings its own labels
    (classification) or a model without a plain bias-free head (LoRA wrappers) takes the model's loss.
    """

    def __init__(self, model: torch.nn.Module, chunked: bool, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        plain = isinstance(model, PreTrainedModel)  # not a peft wrapper, whose base_model is no backbone
        head = model.get_output_embeddings() if plain else None
        self.chunked = chunked and head is not None and getattr(head, "bias", None) is None
        self.dtype = dtype

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        if not self.chunked or set(batch) != {"input_ids"}:
            return self.model(**{"labels": batch["input_ids"], **batch}).loss
        hidden = self.model.base_model(input_ids=batch["input_ids"]).last_hidden_state
        weight = self.model.get_output_embeddings().weight
        return linear_cross_entropy(hidden, weight, shifted_targets(batch["input_ids"]), dtype=self.dtype)
