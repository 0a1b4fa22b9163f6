"""Data-parallel training with torchrun: 2 CPU processes over gloo. Only rank 0 logs, checkpoints and saves."""

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from lmloop.core.config import ModelConfig, TrainConfig
from lmloop.registry import tracking
from lmloop.training import pretrain
from lmloop.training.tokenizer import train_bpe
from lmloop.training.values import Blocks

pytestmark = pytest.mark.slow


def test_two_process_gloo_training_logs_once_and_saves_once(tmp_path: Path) -> None:
    texts = [f"the ship sails at dawn number {i % 50}" for i in range(400)]
    tokenizer = train_bpe(texts, 300, 1, out_dir=tmp_path / "tokenizer")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(tokenizer), size=(128, 32)).tolist()
    Dataset.from_dict({"input_ids": ids}).save_to_disk(str(tmp_path / "blocks" / "train"))
    run_id = tracking.start_run("distributed-test")
    cfg = TrainConfig(max_steps=12, batch_size=4, log_every=4, checkpoint_every=4, warmup_steps=2, nproc=2)
    model = ModelConfig(n_layer=1, n_embd=32, n_head=2, block_size=32)
    blocks = Blocks(path=str(tmp_path / "blocks"), block_size=32, tokenizer=str(tmp_path / "tokenizer"))
    out = pretrain.train_model(blocks, model_cfg=model, train_cfg=cfg, out=tmp_path / "run", run_id=run_id).summary
    assert out["steps"] == 12 and out["tokens"] == 12 * 4 * 32 * 2, "tokens count both ranks"
    assert out["devices"] == 2, "MFU over the peaks of both processes' devices"
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert json.loads((tmp_path / "run" / "model" / "train_summary.json").read_text())["steps"] == 12
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-00000008", "step-00000012"]
    history = tracking.client().get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == [4, 8, 12], "rank 0 alone logs"
