"""Training loop mechanics on a tiny model: loss falls, checkpoints are atomic and verified, resume is exact."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from lmloop.core.config import TrainConfig
from lmloop.training.checkpoint import complete_checkpoints, latest_valid, verify
from lmloop.training.model import build_causal_lm
from lmloop.training.train import train_causal_lm

VOCAB, BLOCK = 64, 16


@pytest.fixture(scope="module")
def blocks() -> Dataset:
    rng = np.random.default_rng(0)
    # a learnable pattern: each token is the previous one plus one (mod vocab), random starts
    starts = rng.integers(0, VOCAB, size=256)
    return Dataset.from_dict({"input_ids": [[(s + i) % VOCAB for i in range(BLOCK)] for s in starts]})


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_causal_lm("llama", VOCAB, 1, n_embd=32, n_head=2, block_size=BLOCK, eos_token_id=0)


CFG = TrainConfig(max_steps=30, batch_size=8, learning_rate=1e-2, warmup_steps=3, log_every=5, checkpoint_every=10)


def test_loss_falls_and_checkpoints_are_kept_and_verified(blocks: Dataset, tmp_path: Path) -> None:
    logged = []
    result = train_causal_lm(
        _model(), blocks, CFG, log=lambda m, s: logged.append((s, m)), checkpoint_dir=tmp_path / "ckpt"
    )
    assert [s for s, _ in logged] == [5, 10, 15, 20, 25, 30]
    assert result.final_loss < result.first_loss * 0.7
    assert {"train_loss", "learning_rate", "grad_norm", "tokens_per_second", "mfu_measured_peak"} <= set(logged[0][1])
    kept = complete_checkpoints(tmp_path / "ckpt")
    assert [p.name for p in kept] == ["step-00000020", "step-00000030"], "keep the last K"
    assert all(verify(p) for p in kept)


@pytest.mark.parametrize("crash_at,resumed_from", [(25, 20), (55, 50)])
def test_resume_after_a_crash_matches_an_uninterrupted_run(
    blocks: Dataset, tmp_path: Path, crash_at: int, resumed_from: int
) -> None:
    """32 batches an epoch: the second case resumes inside epoch 1, where the data order must be epoch 1's."""
    cfg = CFG.model_copy(update={"max_steps": 70})
    straight = train_causal_lm(_model(), blocks, cfg)

    def crash(metrics: dict, step: int) -> None:
        if step == crash_at:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_causal_lm(_model(), blocks, cfg, log=crash, checkpoint_dir=tmp_path / "ckpt")
    resumed = train_causal_lm(_model(), blocks, cfg, log=None, checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resumed_from == resumed_from
    assert resumed.final_loss == pytest.approx(straight.final_loss, rel=1e-4)


def test_a_corrupt_or_unfinished_checkpoint_falls_back_to_the_previous_good_one(
    blocks: Dataset, tmp_path: Path
) -> None:
    root = tmp_path / "ckpt"
    train_causal_lm(_model(), blocks, CFG, log=None, checkpoint_dir=root)
    newest = complete_checkpoints(root)[-1]
    weights = newest / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(raw))
    (root / "step-00000040.tmp").mkdir()  # a write that was killed before its rename
    assert latest_valid(root).name == "step-00000020"
    resumed = train_causal_lm(_model(), blocks, CFG, log=None, checkpoint_dir=root)
    assert resumed.resumed_from == 20 and not math.isnan(resumed.final_loss)


def test_periodic_validation_and_early_stopping(blocks: Dataset) -> None:
    logged = []
    cfg = CFG.model_copy(update={"max_steps": 200, "eval_every": 5, "early_stopping_patience": 1, "learning_rate": 0.3})
    result = train_causal_lm(
        _model(), blocks, cfg, log=lambda m, s: logged.append(m), val_blocks=blocks.select(range(16))
    )
    assert all("val_loss" in m for m in logged)
    assert result.stopped_early and result.steps < 200


def test_checkpoints_also_come_by_the_clock(blocks: Dataset, tmp_path: Path) -> None:
    """A step interval longer than the run, a tiny time interval: checkpoints come anyway (at log steps)."""
    cfg = CFG.model_copy(update={"checkpoint_every": 10_000, "checkpoint_minutes": 1e-6, "keep_checkpoints": 10})
    train_causal_lm(_model(), blocks, cfg, log=None, checkpoint_dir=tmp_path / "ckpt")
    steps = sorted(int(p.name.split("-")[1]) for p in complete_checkpoints(tmp_path / "ckpt"))
    assert steps == [5, 10, 15, 20, 25, 30]


def test_ctrl_c_stops_at_the_next_step_with_a_checkpoint(blocks: Dataset, tmp_path: Path) -> None:
    import os
    import signal

    def log(metrics: dict, step: int) -> None:
        if step == 10:
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C: handled, not raised mid-step

    with pytest.raises(KeyboardInterrupt, match="SIGINT: stopped with a checkpoint saved at step 10"):
        train_causal_lm(
            _model(), blocks, CFG.model_copy(update={"log_every": 5}), log=log, checkpoint_dir=tmp_path / "ckpt"
        )
    assert latest_valid(tmp_path / "ckpt").name.endswith("10")
