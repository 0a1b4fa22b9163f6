"""One data-parallel training process: ``torchrun --nproc_per_node N -m lmloop.ops.worker SPEC.json``.

Every rank trains (Accelerate sets up DDP from torchrun's environment: NCCL on GPUs, gloo on CPUs);
rank 0 alone logs to MLflow, writes checkpoints and saves the model. The flow launches this with
:func:`lmloop.training.pretrain.launch` when ``train.nproc > 1``; across machines, run the same command on each node with
``--nnodes``/``--node_rank``/``--rdzv_endpoint`` (see the README).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmloop.core import settings


def main(spec_path: str) -> None:
    settings.configure_environment()
    from lmloop.core.config import ModelConfig, TrainConfig
    from lmloop.registry import tracking
    from lmloop.training.mechanics import is_main_process
    from lmloop.training.pretrain import train_and_save
    from lmloop.training.values import Blocks

    spec = json.loads(Path(spec_path).read_text())
    log = tracking.step_logger(spec["run_id"]) if spec.get("run_id") and is_main_process() else None
    train_and_save(
        Blocks(**spec["blocks"]),
        model_cfg=ModelConfig(**spec["model"]),
        train_cfg=TrainConfig(**spec["train"]),
        out=Path(spec["out"]),
        log=log,
        init_from=spec.get("init_from"),
        allow_pickle=bool(spec.get("allow_pickle")),
        lora=spec.get("lora", False),
        cache=Path(spec["cache"]) if spec.get("cache") else None,
    )


if __name__ == "__main__":
    main(sys.argv[1])
