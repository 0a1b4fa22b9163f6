"""Training throughput, one process: a bare PyTorch loop vs HF Trainer (run_clm-like defaults) vs
lmloop's training task inside its Prefect flow with MLflow tracking on.

    python benchmarks/train_throughput.py [--config tiny] [--steps 150] [--rounds 3] [--set k=v ...] [--json]

All three train the same model (same config and seed) on the same packed blocks, for the same
number of steps and batch size. Tokens/s is the steady state: the first ``log_every`` steps (warm-up,
allocator, torch.compile) are excluded in all three. A shared or throttled machine drifts by 10-15%
over minutes, so the three run in rounds, interleaved in a rotating order, and each figure is the
median over the rounds (``rounds`` in the JSON keeps every measurement). Orchestration overhead is the flow run's
wall time minus the sum of its task runs' times, as Prefect recorded them; tracking overhead is the
time spent inside MLflow logging calls during training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LMLOOP_HOME", tempfile.mkdtemp(prefix="lmloop-train-bench-"))

from lmloop.core.settings import configure_environment  # noqa: E402

configure_environment()

import torch  # noqa: E402
from datasets import load_from_disk  # noqa: E402

from lmloop.core.config import PipelineConfig  # noqa: E402
from lmloop.core.presets import load_config  # noqa: E402
from lmloop.data.sample_data import write_corpus  # noqa: E402
from lmloop.registry import tracking  # noqa: E402
from lmloop.training.model import build_causal_lm  # noqa: E402
from lmloop.training.tokenizer import load_tokenizer  # noqa: E402


def build_model(cfg: PipelineConfig, tokenizer_dir: str) -> torch.nn.Module:
    torch.manual_seed(cfg.train.seed)
    tok = load_tokenizer(tokenizer_dir)
    m = cfg.model
    return build_causal_lm(
        m.architecture,
        len(tok),
        m.n_layer,
        n_embd=m.n_embd,
        n_head=m.n_head,
        block_size=m.block_size,
        eos_token_id=tok.eos_token_id,
    )


def bare_loop(cfg: PipelineConfig, blocks, tokenizer_dir: str, warmup: int) -> float:
    """The floor: forward, backward, AdamW step; nothing else."""
    model = build_model(cfg, tokenizer_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.learning_rate, fused=True)
    loader = torch.utils.data.DataLoader(
        blocks.with_format("torch", columns=["input_ids"]),
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
    )
    step, start = 0, 0.0
    while step < cfg.train.max_steps:
        for batch in loader:
            loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == warmup:
                start = time.perf_counter()
            if step == cfg.train.max_steps:
                break
    return (step - warmup) * cfg.train.batch_size * cfg.model.block_size / (time.perf_counter() - start)


def hf_trainer(cfg: PipelineConfig, blocks, tokenizer_dir: str, warmup: int) -> float:
    """HF Trainer as run_clm.py would drive it: default TrainingArguments, default collator."""
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

    class Clock(TrainerCallback):
        start = end = 0.0

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step == warmup:
                Clock.start = time.perf_counter()
            Clock.end = time.perf_counter()

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-trainer-"),
        per_device_train_batch_size=cfg.train.batch_size,
        max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.learning_rate,
        warmup_steps=cfg.train.warmup_steps,
        lr_scheduler_type="cosine",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.train.seed,
    )
    data = blocks.map(lambda b: {"labels": b["input_ids"]}, batched=True)
    trainer = Trainer(
        model=build_model(cfg, tokenizer_dir),
        args=args,
        train_dataset=data,
        data_collator=default_data_collator,
        callbacks=[Clock()],
    )
    trainer.train()
    steps = cfg.train.max_steps - warmup
    return steps * cfg.train.batch_size * cfg.model.block_size / (Clock.end - Clock.start)


def lmloop_flow(cfg: PipelineConfig, corpus: Path, warmup: int) -> dict[str, float]:
    """lmloop's training task inside its flow, tracking on; the Prefect server is started beforehand."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.training import training_flow

    flow(lambda: None, name="warm-up")()  # start Prefect's temporary server outside the measurement
    logging_time = [0.0]
    original = tracking.log_metrics

    def timed_log(*args, **kwargs) -> None:
        start = time.perf_counter()
        original(*args, **kwargs)
        logging_time[0] += time.perf_counter() - start

    tracking.log_metrics = timed_log
    try:
        state = training_flow(config=cfg, data=[str(corpus)], return_state=True)
    finally:
        tracking.log_metrics = original
    result = state.result()
    history = tracking.client().get_metric_history(result.run_id, "tokens_per_second")
    steady = [m.value for m in sorted(history, key=lambda m: m.step) if m.step > warmup]

    async def task_times() -> tuple[float, float]:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            return run.total_run_time.total_seconds(), sum(t.total_run_time.total_seconds() for t in tasks)

    import asyncio

    flow_s, tasks_s = asyncio.run(task_times())
    return {
        "tokens_per_second": sum(steady) / len(steady),
        "flow_seconds": flow_s,
        "orchestration_overhead": (flow_s - tasks_s) / flow_s,
        "tracking_overhead": logging_time[0] / flow_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurements per method; medians reported")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    cfg = load_config(args.config, [f"train.max_steps={args.steps}", "eval.samples=0", *args.overrides])
    warmup = cfg.train.log_every
    corpus = Path(os.environ["LMLOOP_HOME"]) / "corpus"
    write_corpus(corpus, seed=0)
    rounds: dict[str, list] = {"bare_loop": [], "hf_trainer_defaults": [], "lmloop_flow": []}
    flows: list[dict[str, float]] = []
    blocks = tokenizer_dir = None
    order = ["lmloop_flow", "bare_loop", "hf_trainer_defaults"]  # the flow first: it packs the blocks the others use
    for r in range(args.rounds):
        for method in order[r % 3 :] + order[: r % 3]:
            if method == "lmloop_flow":
                flows.append(lmloop_flow(cfg, corpus, warmup))
                if blocks is None:  # the flow's own packed blocks feed the other two
                    work = next((Path(os.environ["LMLOOP_HOME"]) / "work").glob("*/blocks"))
                    blocks, tokenizer_dir = load_from_disk(str(work / "train")), str(work.parent / "tokenizer")
            elif method == "bare_loop":
                rounds[method].append(bare_loop(cfg, blocks, tokenizer_dir, warmup))
            else:
                rounds[method].append(hf_trainer(cfg, blocks, tokenizer_dir, warmup))
    rounds["lmloop_flow"] = [f["tokens_per_second"] for f in flows]
    speed = {method: statistics.median(values) for method, values in rounds.items()}
    flow = {key: statistics.median(f[key] for f in flows) for key in flows[0]}
    figures = {
        "config": args.config,
        "steps": cfg.train.max_steps,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "tokens_per_second": speed,
        "ratios": {
            "lmloop_vs_bare_loop": speed["lmloop_flow"] / speed["bare_loop"],
            "lmloop_vs_trainer_defaults": speed["lmloop_flow"] / speed["hf_trainer_defaults"],
        },
        "flow_seconds": flow["flow_seconds"],
        "orchestration_overhead_share": flow["orchestration_overhead"],
        "tracking_overhead_share": flow["tracking_overhead"],
        "rounds": rounds,
    }
    for key, value in figures.items():
        print(f"{key:>30}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
