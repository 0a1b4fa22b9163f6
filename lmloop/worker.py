"""One data-parallel training process: ``torchrun --nproc_per_node N -m lmloop.worker SPEC.json``.

Every rank trains (Accelerate sets up DDP from torchrun's environment: NCCL on GPUs, gloo on CPUs);
rank 0 alone logs to MLflow, writes checkpoints and saves the model. The flow launches this with
:func:`launch` when ``train.nproc > 1``; across machines, run the same command on each node with
``--nnodes``/``--node_rank``/``--rdzv_endpoint`` (see the README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lmloop import settings


def launch(spec: Path, nproc: int) -> None:
    """Run ``nproc`` workers on this machine and wait; a failed rank fails the launch."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    subprocess.run([*command, "-m", "lmloop.worker", str(spec)], check=True)


def main(spec_path: str) -> None:
    settings.configure_environment()
    from lmloop import stages, tracking
    from lmloop.config import ModelConfig, TrainConfig
    from lmloop.train import is_main_process

    spec = json.loads(Path(spec_path).read_text())
    log = tracking.step_logger(spec["run_id"]) if spec.get("run_id") and is_main_process() else None
    stages.train_and_save(
        spec["blocks"],
        spec["tokenizer"],
        ModelConfig(**spec["model"]),
        TrainConfig(**spec["train"]),
        Path(spec["out"]),
        log,
        spec.get("init_from"),
        spec.get("lora", False),
    )


if __name__ == "__main__":
    main(sys.argv[1])
