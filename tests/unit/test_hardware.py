"""Shapes and numbers that suit the hardware: padded vocabulary, the chunked LM head + loss, micro-batches
that split a step without changing it, honest MFU, CPU threads; and the GPU benchmark's CPU smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from lmloop.core.config import TrainConfig
from lmloop.training import flops
from lmloop.training.fused_loss import CausalLMLoss, linear_cross_entropy, shifted_targets
from lmloop.training.hardware import candidates, physical_cores, plan_micro_batch, set_threads
from lmloop.training.model import build_causal_lm, padded_vocab
from lmloop.training.train import train_causal_lm

ROOT = Path(__file__).resolve().parents[2]


def test_the_vocabulary_is_padded_to_a_multiple_of_64_and_padding_is_never_generated() -> None:
    assert [padded_vocab(n) for n in (64, 65, 2048, 50257)] == [64, 128, 2048, 50304]
    torch.manual_seed(0)
    model = build_causal_lm("gpt2", 100, 1, n_embd=32, n_head=2, block_size=32, eos_token_id=0)
    assert model.config.vocab_size == 128 and model.generation_config.suppress_tokens == list(range(100, 128))
    with torch.no_grad():  # make the padding rows the most likely tokens: generation must still avoid them
        model.get_output_embeddings().weight[100:] = 5 * model.get_output_embeddings().weight[:28].abs().max()
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=20, do_sample=True, pad_token_id=0)
    assert int(out.max()) < 100


def test_the_chunked_head_and_loss_equal_the_models_own_loss_and_gradients() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 29, 16, requires_grad=True)
    weight = torch.randn(70, 16, requires_grad=True)
    targets = shifted_targets(torch.randint(0, 70, (3, 29)))
    reference = F.cross_entropy((hidden @ weight.T).reshape(-1, 70), targets.reshape(-1), ignore_index=-100)
    grads = torch.autograd.grad(reference, (hidden, weight))
    chunked = linear_cross_entropy(hidden, weight, targets, chunk=10)  # 87 rows: uneven chunks
    assert chunked.item() == pytest.approx(reference.item(), rel=1e-6)
    for mine, theirs in zip(torch.autograd.grad(chunked, (hidden, weight)), grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)
    for architecture in ("llama", "gpt2"):
        model = build_causal_lm(architecture, 100, 2, n_embd=32, n_head=2, block_size=16, eos_token_id=0)
        ids = torch.randint(0, 100, (2, 16))
        assert CausalLMLoss(model, chunked=True).chunked
        assert CausalLMLoss(model, True)(input_ids=ids).item() == pytest.approx(
            model(input_ids=ids, labels=ids).loss.item(), rel=1e-5
        )


def _blocks() -> Dataset:
    starts = np.random.default_rng(0).integers(0, 64, size=128)
    return Dataset.from_dict({"input_ids": [[(s + i) % 64 for i in range(16)] for s in starts]})


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_causal_lm("llama", 64, 1, n_embd=32, n_head=2, block_size=16, eos_token_id=0)


def test_micro_batches_split_an_optimizer_step_without_changing_it() -> None:
    cfg = TrainConfig(max_steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=2, log_every=4, threads=1)
    threads = torch.get_num_threads()
    whole = train_causal_lm(_model(), _blocks(), cfg)
    split = train_causal_lm(_model(), _blocks(), cfg.model_copy(update={"micro_batch_size": 2}))
    assert (whole.micro_batch_size, whole.grad_accum) == (8, 1) and (split.micro_batch_size, split.grad_accum) == (2, 4)
    assert split.tokens == whole.tokens
    assert split.final_loss == pytest.approx(whole.final_loss, rel=1e-4)
    assert whole.threads == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="must divide"):
        TrainConfig(batch_size=8, grad_accum=2, micro_batch_size=3)


def test_cpu_threads_come_from_the_config_then_omp_num_threads_then_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert set_threads(TrainConfig()) == 3 == torch.get_num_threads()
        assert set_threads(TrainConfig(threads=1)) == 1 == torch.get_num_threads()
        for unset in ("", "0", "four"):
            monkeypatch.setenv("OMP_NUM_THREADS", unset)
            assert set_threads(TrainConfig()) == physical_cores()
    finally:
        torch.set_num_threads(before)


def test_micro_batch_candidates_and_plan() -> None:
    assert list(candidates(128)) == [128, 64, 32, 16, 8, 4, 2, 1]
    assert list(candidates(96)) == [96, 48, 24, 12, 6, 3, 1]
    cfg = TrainConfig(batch_size=16, grad_accum=8)
    assert plan_micro_batch(cfg, lambda rows: 32, cuda=True) == (32, 4)
    assert plan_micro_batch(cfg, lambda rows: 32, cuda=False) == (16, 8)
    assert plan_micro_batch(cfg.model_copy(update={"micro_batch_size": 64}), lambda rows: 1, cuda=True) == (64, 2)


def test_mfu_counts_every_parameter_and_a_stale_peak_is_measured_again(tmp_path: Path) -> None:
    model = build_causal_lm("gpt2", 100, 2, n_embd=32, n_head=2, block_size=16, eos_token_id=0)
    assert flops.flops_per_token(model, 16) == 6 * model.num_parameters() + 12 * 2 * 32 * 16
    cache = tmp_path / "peak_flops.json"
    cache.write_text(json.dumps({flops._key(torch.device("cpu")): 1e6}))  # measured on a very busy machine
    util = flops.Utilisation(model, 16, torch.device("cpu"), cache=cache)
    assert util.measured == 1e6 and util.datasheet is None
    mfu = util(tokens_per_second=1e4)  # 1e4 tokens/s x ~1e6 FLOP/token is far above the stale 1 MFLOP/s peak
    remeasured = json.loads(cache.read_text())[flops._key(torch.device("cpu"))]
    assert remeasured > 1e6, "the peak was measured again"
    assert mfu["mfu_measured_peak"] == pytest.approx(flops.flops_per_token(model, 16) * 1e4 / remeasured)


def test_a_run_above_the_measured_peak_reports_no_figure_made_to_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the peak became max(re-measured, achieved), so a bad peak read as exactly 1.0."""
    model = build_causal_lm("gpt2", 100, 2, n_embd=32, n_head=2, block_size=16, eos_token_id=0)
    monkeypatch.setattr(flops, "measure_matmul_peak", lambda device: 1e6)  # a peak that stays wrong
    util = flops.Utilisation(model, 16, torch.device("cpu"), cache=tmp_path / "peak_flops.json")
    util.datasheet = 1e15  # a known card's figure
    with caplog.at_level("WARNING"):
        mfu = util(tokens_per_second=1e4)
    assert "mfu_measured_peak" not in mfu and "unreliable" in caplog.text
    assert mfu["mfu_datasheet"] == pytest.approx(flops.flops_per_token(model, 16) * 1e4 / 1e15)


def test_mfu_of_a_run_on_two_devices_is_over_both_peaks(tmp_path: Path) -> None:
    """Before: tokens of every process over one device's peak, so N processes read N times their MFU."""
    model = build_causal_lm("gpt2", 100, 2, n_embd=32, n_head=2, block_size=16, eos_token_id=0)
    cache = tmp_path / "peak_flops.json"
    cache.write_text(json.dumps({flops._key(torch.device("cpu")): 1e12}))
    one = flops.Utilisation(model, 16, torch.device("cpu"), cache=cache)
    two = flops.Utilisation(model, 16, torch.device("cpu"), cache=cache, devices=2)
    one.datasheet = two.datasheet = 1e14
    both_ranks = 2e4  # tokens/s of both processes together: each does what the single one does
    assert two(both_ranks)["mfu_measured_peak"] == pytest.approx(one(both_ranks / 2)["mfu_measured_peak"])
    assert two(both_ranks)["mfu_datasheet"] == pytest.approx(one(both_ranks / 2)["mfu_datasheet"])
    assert two(both_ranks)["mfu_measured_peak"] == pytest.approx(one(both_ranks)["mfu_measured_peak"] / 2)


def test_the_gpu_benchmark_runs_end_to_end_on_cpu() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(figures["variants"]) == {"lmloop", "bare_loop", "bare_loop_same_attention", "hf_trainer_bf16_compile"}
    assert all(v["tokens_per_second"] > 0 for v in figures["variants"].values())
    assert figures["ratios"]["lmloop_vs_bare_loop"] > 0
    assert figures["loss_check"]["chunked_loss"] == pytest.approx(figures["loss_check"]["model_loss"], rel=1e-5)


class _FakeCard:
    """A CUDA card of ``total`` bytes as the probe sees it, on CPU: a row of the micro-batch costs ``per_row``
    bytes, and a micro-batch above ``oom_above`` rows raises CUDA's out-of-memory error."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, total: int, per_row: int, oom_above: int) -> None:
        self.total, self.per_row, self.oom_above, self.peak, self.tried = total, per_row, oom_above, 0, []
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": total}))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake Card 1GB")
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: setattr(self, "peak", 0))
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: self.peak)

    def run(self, loss: CausalLMLoss):
        def call(**batch: torch.Tensor) -> torch.Tensor:
            rows = batch["input_ids"].shape[0]
            self.tried.append(rows)
            if rows > self.oom_above:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake card)")
            self.peak = rows * self.per_row
            return loss(**batch)  # a real forward and backward on CPU

        return call


def test_the_micro_batch_probe_backs_off_until_a_step_fits_and_remembers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``fits`` and ``probe_micro_batch`` never ran in a test (they need a GPU). On CPU with a fake card:
    64 rows raise out-of-memory, 32 rows do not fit the headroom, 16 do; the answer is cached per setup."""
    from lmloop.training.hardware import HEADROOM, probe_micro_batch

    model = build_causal_lm("gpt2", 100, 1, n_embd=32, n_head=2, block_size=16, eos_token_id=0)
    loss = CausalLMLoss(model, False, None)
    optimizer_bytes = 8 * sum(p.numel() for p in loss.parameters())
    total = 10**9
    per_row = int((HEADROOM * total - optimizer_bytes) / 24)  # 16 rows fit under the headroom, 32 do not
    card = _FakeCard(monkeypatch, total, per_row, oom_above=32)
    cache = tmp_path / "micro_batch.json"
    assert probe_micro_batch(card.run(loss), loss, 16, rows=64, how="eager", cache=cache) == 16
    assert card.tried == [64, 32, 16], "halving from the step's rows"
    assert all(p.grad is None for p in loss.parameters()), "the probe leaves no gradient behind"
    assert list(json.loads(cache.read_text()).values()) == [16]
    card.tried.clear()
    assert probe_micro_batch(card.run(loss), loss, 16, rows=64, how="eager", cache=cache) == 16
    assert card.tried == [], "the cached answer, no probe"
    assert probe_micro_batch(card.run(loss), loss, 16, rows=64, how="compiled", cache=cache) == 16
    assert card.tried == [64, 32, 16], "another setup is probed on its own"
