"""GPU training throughput, one process, one call: the card's bf16 matmul ceiling, then lmloop's Trainer,
a bare compiled loop and HF Trainer (bf16 + tf32 + compile) on the ``gpt2-124m`` preset.

    python benchmarks/gpu_throughput.py [--config gpt2-124m] [--steps 30] [--set k=v ...] [--json] [--out F]
    python benchmarks/gpu_throughput.py --smoke      # the same code path on CPU with a tiny model (CI)

Every variant trains the same model (same config and seed, vocabulary padded as lmloop builds it) on the
same random token blocks, with the same rows per optimizer step; the bare loop and HF Trainer take the
micro-batch lmloop chose. Tokens/s is the steady state (the first third of the steps, where
``torch.compile`` and the allocator warm up, is left out). MFU is PaLM's / nanoGPT's count (6 x all
parameters + 12 x layers x width x context) over the datasheet's peak (989 TFLOP/s on H100/H200) and
over the ceiling measured here. Needs only torch, transformers, accelerate, pydantic and PyYAML
(no datasets, MLflow or Prefect), so it runs on a bare GPU machine. Prints a table and one JSON line;
``--out`` also writes the figures after every variant (a run cut short keeps what it measured).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lmloop.core.config import PipelineConfig  # noqa: E402
from lmloop.core.presets import load_config  # noqa: E402
from lmloop.training.flops import datasheet_peak, flops_per_token, measure_matmul_peak  # noqa: E402
from lmloop.training.hardware import attention_kernels  # noqa: E402
from lmloop.training.mechanics import autocast  # noqa: E402
from lmloop.training.model import build_causal_lm  # noqa: E402
from lmloop.training.train import Trainer  # noqa: E402

SMOKE = [
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.block_size=32",
    "tokenizer.vocab_size=300",
    "train.batch_size=2",
    "train.grad_accum=2",
    "train.compile=false",
    "train.device=cpu",
]


class RandomBlocks(torch.utils.data.Dataset):
    """Random token blocks: throughput does not depend on what the tokens say."""

    def __init__(self, rows: int, block: int, vocab: int, seed: int = 0) -> None:
        self.ids = torch.randint(0, vocab, (rows, block), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i]}


def new_model(cfg: PipelineConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    vocab = cfg.tokenizer.vocab_size
    return build_causal_lm(
        m.architecture, vocab, m.n_layer, n_embd=m.n_embd, n_head=m.n_head, block_size=m.block_size, eos_token_id=0
    ).to(device)


def release() -> None:
    """Free the last variant's memory and compiled graphs, and Accelerate's process-wide state (HF Trainer
    sets bf16 there, lmloop's loop does its own autocast)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def warmup_steps(steps: int) -> int:
    """The first third of the steps: compilation, autotuning and the allocator settle there."""
    return max(1, steps // 3)


def steady(times: list[float], steps: int, tokens_per_step: int) -> float:
    """Tokens/s between the end of the warm-up and the last step (``times``: synced clock at both, and
    possibly between; nothing else waits for the GPU, as in a real run)."""
    return (steps - warmup_steps(steps)) * tokens_per_step / (times[-1] - times[0])


def lmloop_trainer(cfg: PipelineConfig, data: RandomBlocks, device: torch.device) -> dict[str, Any]:
    """lmloop's own Trainer, as the training stage runs it (no checkpoints: they are not throughput)."""
    times: list[float] = []
    steps = cfg.train.max_steps
    trainer = Trainer(new_model(cfg, device), data, cfg.train.model_copy(update={"log_every": warmup_steps(steps)}))
    trainer.log = lambda metrics, step: times.append(time.perf_counter())  # logging reads the loss: a sync
    result = trainer.run()
    tps = steady(times, steps, trainer.tokens_per_step)
    return {"tokens_per_second": tps, "micro_batch_size": result.micro_batch_size, "grad_accum": result.grad_accum}


def bare_loop(
    cfg: PipelineConfig, data: RandomBlocks, device: torch.device, micro: int, accum: int, attention: str | None = None
) -> dict:
    """nanoGPT's loop: autocast bf16, TF32, compiled model, fused AdamW; nothing else. ``attention``: the
    SDPA kernel lmloop puts first (default: PyTorch's own order)."""
    model = new_model(cfg, device)
    compiled = torch.compile(model) if cfg.train.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.learning_rate, betas=(0.9, 0.95), fused=True)
    loader = torch.utils.data.DataLoader(data, batch_size=micro, shuffle=True, drop_last=True, pin_memory=True)
    batches = (b["input_ids"].to(device, non_blocking=True) for _ in iter(int, 1) for b in loader)
    times, steps = [], cfg.train.max_steps
    for step in range(1, steps + 1):
        for _ in range(accum):
            ids = next(batches)
            with autocast(device), attention_kernels(attention, device) if attention else nullcontext():
                loss = compiled(input_ids=ids, labels=ids).loss
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step in (warmup_steps(steps), steps):
            sync()
            times.append(time.perf_counter())
    return {"tokens_per_second": steady(times, steps, micro * accum * cfg.model.block_size)}


def hf_trainer(cfg: PipelineConfig, data: RandomBlocks, device: torch.device, micro: int, accum: int) -> dict:
    """transformers' Trainer with bf16, TF32 and torch.compile on, the same micro-batch and accumulation."""
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback, TrainingArguments

    times: list[float] = []
    steps = cfg.train.max_steps

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step in (warmup_steps(steps), steps):
                sync()
                times.append(time.perf_counter())

    cuda = device.type == "cuda"
    options = dict(
        output_dir=tempfile.mkdtemp(prefix="hf-bench-"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.learning_rate,
        bf16=cuda,
        tf32=cuda,
        torch_compile=cuda and cfg.train.compile,
        use_cpu=not cuda,
        optim="adamw_torch_fused",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_drop_last=True,
        remove_unused_columns=False,
    )
    known = inspect.signature(TrainingArguments).parameters
    args = TrainingArguments(**{k: v for k, v in options.items() if k in known})

    def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids = torch.stack([r["input_ids"] for r in rows])
        return {"input_ids": ids, "labels": ids}

    HFTrainer(
        model=new_model(cfg, device), args=args, train_dataset=data, data_collator=collate, callbacks=[Clock()]
    ).train()
    return {"tokens_per_second": steady(times, steps, micro * accum * cfg.model.block_size)}


def loss_check(cfg: PipelineConfig, data: RandomBlocks, device: torch.device) -> dict[str, float]:
    """The chunked head + loss against the model's own loss on one batch, with the gradients' agreement."""
    from lmloop.training.fused_loss import CausalLMLoss

    model = new_model(cfg, device)
    ids = data.ids[:4].to(device)
    out = {}
    for name, chunked in (("model_loss", False), ("chunked_loss", True)):
        with autocast(device):
            loss = CausalLMLoss(model, chunked, torch.bfloat16 if device.type == "cuda" else None)(input_ids=ids)
        loss.backward()
        out[name] = loss.item()
        out[f"{name}_head_grad_norm"] = model.get_output_embeddings().weight.grad.norm().item()
        model.zero_grad(set_to_none=True)
    return out


def measure(
    name: str, fn: Callable[[], dict[str, Any]], figures: dict[str, Any], per_token: float, peaks: dict
) -> None:
    release()
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # one variant failing (a compiler crash, OOM) must not lose the others
        figures["variants"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        return
    out["wall_seconds"] = time.perf_counter() - start
    out["peak_memory_gib"] = peak_gib()
    for peak_name, peak in peaks.items():
        if peak:
            out[f"mfu_{peak_name}"] = per_token * out["tokens_per_second"] / peak
    figures["variants"][name] = out


def ratios(variants: dict[str, dict[str, Any]]) -> dict[str, float]:
    speed = {k: v["tokens_per_second"] for k, v in variants.items() if "tokens_per_second" in v}
    out = {}
    for other in ("bare_loop", "bare_loop_same_attention", "hf_trainer_bf16_compile"):
        if "lmloop" in speed and other in speed:
            out[f"lmloop_vs_{other}"] = speed["lmloop"] / speed[other]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="gpt2-124m")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: the code path, not the figures")
    parser.add_argument("--only-lmloop", action="store_true", help="measure lmloop's Trainer alone")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the figures here after every variant")
    args = parser.parse_args()
    steps = 6 if args.smoke else args.steps
    cfg = load_config(args.config, [*(SMOKE if args.smoke else []), f"train.max_steps={steps}", *args.overrides])
    device = torch.device("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    peaks = {"datasheet": datasheet_peak(device), "measured_ceiling": measure_matmul_peak(device)}
    rows = cfg.train.batch_size * cfg.train.grad_accum
    data = RandomBlocks(rows * 4, cfg.model.block_size, cfg.tokenizer.vocab_size)
    per_token = flops_per_token(new_model(cfg, torch.device("cpu")), cfg.model.block_size)
    figures: dict[str, Any] = {
        "config": args.config,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "steps": steps,
        "rows_per_step": rows,
        "flops_per_token": per_token,
        "peaks_flops": peaks,
        "variants": {},
    }

    def save() -> None:
        figures["ratios"] = ratios(figures["variants"])
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2))

    figures["loss_check"] = loss_check(cfg, data, device)
    measure("lmloop", lambda: lmloop_trainer(cfg, data, device), figures, per_token, peaks)
    save()
    chosen = figures["variants"]["lmloop"]
    micro, accum = chosen.get("micro_batch_size", cfg.train.batch_size), chosen.get("grad_accum", cfg.train.grad_accum)
    plan = [
        ("bare_loop", lambda: bare_loop(cfg, data, device, micro, accum)),
        ("bare_loop_same_attention", lambda: bare_loop(cfg, data, device, micro, accum, cfg.train.attention)),
        ("hf_trainer_bf16_compile", lambda: hf_trainer(cfg, data, device, micro, accum)),
    ]
    for name, fn in [] if args.only_lmloop else plan:
        measure(name, fn, figures, per_token, peaks)
        save()
    print(f"{'variant':<26}{'tokens/s':>12}{'MFU(989)':>10}{'MFU(meas.)':>12}{'peak GiB':>10}{'micro x accum':>15}")
    for name, v in figures["variants"].items():
        if "error" in v:
            print(f"{name:<26} failed: {v['error']}")
            continue
        shape = f"{v.get('micro_batch_size', micro)} x {v.get('grad_accum', accum)}"
        mem = v["peak_memory_gib"]
        print(
            f"{name:<26}{v['tokens_per_second']:>12,.0f}{v.get('mfu_datasheet', float('nan')):>10.3f}"
            f"{v.get('mfu_measured_ceiling', float('nan')):>12.3f}{(mem or 0):>10.1f}{shape:>15}"
        )
    print("ratios:", json.dumps(figures["ratios"]))
    print("median tokens/s:", statistics.median(v.get("tokens_per_second", 0) for v in figures["variants"].values()))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
