"""Checkpoint faults on a real training process: kill -9 while a checkpoint is being written (a
``.tmp`` directory is on disk), and one flipped byte in the newest checkpoint. Both are detected (no
completion marker / sha256 mismatch) and training resumes from the previous good checkpoint."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lmloop.training.checkpoint import complete_checkpoints, latest_valid, verify

pytestmark = pytest.mark.slow

# ~9M parameters: weights + AdamW state ~110 MB per checkpoint, so a write takes long enough to be caught.
TRAIN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np, torch
    from datasets import Dataset
    from lmloop.core.config import TrainConfig
    from lmloop.training.model import build_causal_lm
    from lmloop.training.train import train_causal_lm

    vocab, block = 4096, 32
    rng = np.random.default_rng(0)
    blocks = Dataset.from_dict({"input_ids": rng.integers(0, vocab, size=(256, block)).tolist()})
    torch.manual_seed(0)
    model = build_causal_lm("llama", vocab, 4, n_embd=384, n_head=6, block_size=block, eos_token_id=0)
    cfg = TrainConfig(max_steps=int(sys.argv[2]), batch_size=4, learning_rate=1e-3, warmup_steps=2,
                      log_every=1, checkpoint_every=1, keep_checkpoints=3)
    result = train_causal_lm(model, blocks, cfg, checkpoint_dir=Path(sys.argv[1]))
    print("RESUMED_FROM", result.resumed_from, "STEPS", result.steps, flush=True)
    """
)


def _train(root: Path, steps: int, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "LMLOOP_PROGRESS": "off"}
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(root), str(steps)], env=env, text=True, stdout=subprocess.PIPE, **kwargs
    )


def _partial(root: Path) -> list[Path]:
    """Checkpoint folders being written (non-empty ``.tmp``); one renamed while we look is not one."""
    found = []
    for path in root.glob("*.tmp") if root.exists() else []:
        try:
            if any(path.iterdir()):
                found.append(path)
        except FileNotFoundError:
            continue
    return found


def test_kill_during_a_checkpoint_write_then_a_flipped_byte(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    proc = _train(root, 40, stderr=subprocess.PIPE)
    caught = None
    deadline = time.monotonic() + 240
    while caught is None and proc.poll() is None and time.monotonic() < deadline:
        partial = _partial(root)
        if partial and len(complete_checkpoints(root)) >= 2:  # mid-write, two good ones behind it
            proc.send_signal(signal.SIGKILL)
            caught = partial[0]
        time.sleep(0.002)
    proc.wait()
    assert caught is not None, "never caught a checkpoint mid-write: " + (proc.stderr.read() or "")[-2000:]
    assert caught.exists(), "the half-written checkpoint stays a .tmp directory, never renamed"
    good = latest_valid(root)
    assert good is not None and good.name < caught.name.removesuffix(".tmp")

    weights = good / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 3] ^= 0x01  # one flipped bit in the newest complete checkpoint
    weights.write_bytes(bytes(raw))
    assert not verify(good), "sha256 catches the flipped byte"
    fallback = latest_valid(root)
    assert fallback is not None and fallback.name < good.name, "the previous good checkpoint is used"

    resume = _train(root, int(fallback.name.split("-")[1]) + 2, stderr=subprocess.DEVNULL)
    out, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0
    assert f"RESUMED_FROM {int(fallback.name.split('-')[1])}" in out, out
