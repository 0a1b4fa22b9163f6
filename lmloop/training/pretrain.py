"""The training stage: :class:`Blocks` -> :class:`TrainedModel`, from scratch or warm-started from a
registered model, in this process or in ``train.nproc`` torchrun processes (:mod:`lmloop.ops.worker`).

A warm start takes architecture, tokenizer and block size from the model it starts from; a config
that contradicts them (a field the user set) is refused with both values named.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed

from lmloop.core.config import ConfigError, ModelConfig, TrainConfig
from lmloop.core.files import write_json
from lmloop.training.bases import PretrainedBase, is_causal
from lmloop.training.classify import lora_targets, merge_lora
from lmloop.training.mechanics import is_main_process
from lmloop.training.model import build_causal_lm, load_pretrained
from lmloop.training.tokenizer import load_tokenizer
from lmloop.training.train import LogFn, train_causal_lm
from lmloop.training.values import BaseModelRef, Blocks, TrainedModel

ARCHITECTURE_FIELDS = ("architecture", "n_layer", "n_embd", "n_head", "block_size", "intermediate_size")


def model_config_of(model_dir: str | Path) -> ModelConfig:
    """The architecture of a saved model, as lmloop's config would have described it."""
    raw = json.loads((Path(model_dir) / "config.json").read_text())
    if raw["model_type"] == "gpt2":
        fields = {"architecture": "gpt2", "n_layer": raw["n_layer"], "n_embd": raw["n_embd"], "n_head": raw["n_head"]}
        fields |= {"block_size": raw["n_positions"], "intermediate_size": raw.get("n_inner")}
    else:
        fields = {"architecture": "llama", "n_layer": raw["num_hidden_layers"], "n_embd": raw["hidden_size"]}
        fields |= {"n_head": raw["num_attention_heads"], "block_size": raw["max_position_embeddings"]}
        fields |= {"intermediate_size": raw["intermediate_size"]}
    return ModelConfig(**fields)


def warm_start_model(requested: ModelConfig, base: ModelConfig, base_name: str) -> ModelConfig:
    """The architecture to continue with: ``base``'s. Fields the user set in ``requested`` must agree."""
    for field in ARCHITECTURE_FIELDS:
        if (
            field not in requested.model_fields_set
            or field == "intermediate_size"
            and requested.intermediate_size is None
        ):
            continue
        mine, theirs = getattr(requested, field), getattr(base, field)
        if mine != theirs:
            raise ConfigError(
                f"model.{field}={mine} contradicts {base_name}, which has {field}={theirs}: a warm start keeps "
                f"the architecture, tokenizer and block size of the model it starts from. Drop model.{field} "
                f"from the config (or --set model.{field}={theirs})."
            )
    return base


def causal_lm(
    tokenizer: Any, model_cfg: ModelConfig, init_from: str | None, *, lora: bool, safe_only: bool = True
) -> Any:
    """A new model from config, or warm-started from ``init_from`` (optionally with LoRA adapters). A folder
    with pickle weights only loads with ``safe_only=False`` (``model.allow_pickle_weights``, checked when the
    base was resolved); transformers then unpickles tensors only (``weights_only``)."""
    if init_from is None:
        return build_causal_lm(
            model_cfg.architecture,
            vocab_size=len(tokenizer),
            n_layer=model_cfg.n_layer,
            n_embd=model_cfg.n_embd,
            n_head=model_cfg.n_head,
            block_size=model_cfg.block_size,
            eos_token_id=tokenizer.eos_token_id,
            intermediate_size=model_cfg.intermediate_size,
            dropout=model_cfg.dropout,
        )
    from transformers import AutoModelForCausalLM

    model = load_pretrained(AutoModelForCausalLM, init_from, use_safetensors=True if safe_only else None)
    if lora:
        from peft import LoraConfig, TaskType, get_peft_model

        targets = lora_targets(model)
        model = get_peft_model(
            model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=targets)
        )
    return model


def train_and_save(
    blocks: Blocks,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out: Path,
    log: LogFn | None = None,
    init_from: str | None = None,
    lora: bool = False,
    cache: Path | None = None,
    allow_pickle: bool = False,
) -> TrainedModel:
    """Build (or warm-start from ``init_from``), train (resuming from ``out/checkpoints``) and, on rank 0,
    save the model. Runs in every data-parallel process when launched by :mod:`lmloop.ops.worker`."""
    tokenizer = load_tokenizer(blocks.tokenizer)
    set_seed(train_cfg.seed)  # the initial weights too: the same seed must mean the same run
    model = causal_lm(tokenizer, model_cfg, init_from, lora=lora, safe_only=not allow_pickle)
    result = train_causal_lm(
        model,
        blocks.load("train"),
        train_cfg,
        log=log,
        checkpoint_dir=out / "checkpoints",
        val_blocks=blocks.load("validation"),
        cache_dir=cache,
    )
    model = merge_lora(model)
    model_dir = out / "model"
    summary = {"model_dir": str(model_dir), "parameters": model.num_parameters(), **asdict(result)}
    if is_main_process():
        model.save_pretrained(str(model_dir))  # safetensors
        tokenizer.save_pretrained(str(model_dir))
        write_json(model_dir / "train_summary.json", summary)
    return TrainedModel(dir=str(model_dir), summary=summary)


def launch(spec: Path, nproc: int) -> None:
    """Run ``nproc`` :mod:`lmloop.ops.worker` processes on this machine and wait; a failed rank fails the launch."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    subprocess.run([*command, "-m", "lmloop.ops.worker", str(spec)], check=True)


def train_model(
    blocks: Blocks,
    *,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out: Path,
    log: LogFn | None = None,
    run_id: str | None = None,
    init_from: str | None = None,
    lora: bool = False,
    cache: Path | None = None,
    allow_pickle: bool = False,
) -> TrainedModel:
    """Train in this process, or with ``train.nproc > 1`` in that many torchrun processes (rank 0 logs to
    ``run_id``). ``cache``: where measured hardware figures are kept."""
    options = {"model_cfg": model_cfg, "train_cfg": train_cfg, "out": out, "init_from": init_from, "lora": lora}
    options["allow_pickle"] = allow_pickle
    if train_cfg.nproc == 1:
        return train_and_save(blocks, log=log, cache=cache, **options)
    spec = {
        "blocks": blocks.model_dump(),
        "model": model_cfg.model_dump(),
        "train": train_cfg.model_dump(),
        "out": str(out),
        "run_id": run_id,
        "init_from": init_from,
        "lora": lora,
        "allow_pickle": allow_pickle,
        "cache": str(cache) if cache else None,
    }
    launch(write_json(out / "train_spec.json", spec), train_cfg.nproc)
    model_dir = out / "model"
    return TrainedModel(dir=str(model_dir), summary=json.loads((model_dir / "train_summary.json").read_text()))


ARCHITECTURE_TAG = "lmloop.architecture"  # a registered version's architecture, read before a warm start's run opens


def architecture_tag(model_dir: str | Path) -> dict[str, str]:
    """The version tag that lets a warm start be checked against the config before its run opens."""
    described = model_config_of(model_dir)
    return {ARCHITECTURE_TAG: json.dumps({f: getattr(described, f) for f in ARCHITECTURE_FIELDS})}


def check_warm_start(requested: ModelConfig, tags: dict[str, str], label: str) -> None:
    """ConfigError when ``requested`` contradicts the architecture a registered version's tags record (a
    version registered before the tag existed is checked when it is downloaded, inside the run)."""
    if ARCHITECTURE_TAG in tags:
        warm_start_model(requested, ModelConfig(**json.loads(tags[ARCHITECTURE_TAG])), label)


def base_model_ref(name: str, fetched: dict[str, str], requested: ModelConfig) -> BaseModelRef:
    """A downloaded registered model (:func:`lmloop.registry.tracking.fetch_model`) with the architecture to
    continue with, checked against the config's (:func:`warm_start_model`)."""
    label = f"{name} v{fetched['version']}"
    model = warm_start_model(requested, model_config_of(fetched["model_dir"]), label)
    return BaseModelRef(
        name=name,
        version=fetched["version"],
        dir=fetched["model_dir"],
        tokenizer_dir=fetched["tokenizer_dir"],
        block_size=model.block_size,
        model=model,
    )


def fast_tokenizer(model_dir: str, out: Path) -> str:
    """The checkpoint's tokenizer saved in the fast (``tokenizer.json``) form the token cache reads."""
    load_tokenizer(model_dir).save_pretrained(str(out))
    return str(out)


def pretrained_ref(base: PretrainedBase, requested: ModelConfig, *, task: str) -> BaseModelRef:
    """A pretrained checkpoint to start from. Its tokenizer is its own; the length trained at is the config's
    ``model.block_size`` when the user set it, else 512, and never past the checkpoint's position limit.
    Continued causal-LM training needs a causal architecture."""
    if task == "lm" and not is_causal(base.model_type):
        raise ConfigError(
            f"{base.spec} is a {base.model_type} model, not a causal LM: continued language-model training needs a "
            "causal checkpoint (GPT-2, Llama, Qwen2, Mistral, ...); an encoder serves --task classification"
        )
    wanted = requested.block_size if "block_size" in requested.model_fields_set else 512
    block = min(wanted, base.max_positions)
    return BaseModelRef(
        name=base.spec,
        version=(base.commit or "folder")[:12],
        dir=base.dir,
        tokenizer_dir=base.dir,
        block_size=block,
        pretrained=base,
    )
