"""Typed, frozen configuration: one model per stage, loaded from YAML presets plus ``--set`` overrides.

The top-level :class:`PipelineConfig` is also the training flow's parameter, so the Prefect UI
renders a form from it for manual runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from data_checks.thresholds import ValidationConfig
from lmloop.core.errors import UserError

__all__ = ["ValidationConfig"]  # defined beside the suites that use it; part of the pipeline config


class ConfigError(UserError):
    """A config file or override is invalid; the message names the file and the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    """Where the text comes from and how it is split."""

    sources: list[str] = Field(default_factory=list, description="Files, folders or globs to ingest.")
    text_column: str = Field("text", description="Field/column holding the document text.")
    label_column: str = Field("label", description="Optional field/column holding a class label.")
    id_column: str | None = Field(None, description="Optional field/column holding a record id (kept as record_id).")
    roots: list[str] | None = Field(None, description="Only read inside these folders; default: each source's own.")
    nfc: bool = Field(True, description="Unicode NFC normalisation of every document.")
    clean_whitespace: bool = Field(True, description="Collapse runs of spaces, strip lines, keep paragraph breaks.")
    dedup_against_trained: bool = Field(
        False, description="Drop documents some registered model already trained on (continual learning turns it on)."
    )
    frozen_eval: list[str] = Field(
        default_factory=list, description="Frozen evaluation files: their documents are removed from training data."
    )
    storage_options: dict[str, dict[str, SecretStr]] = Field(
        default_factory=dict,
        description="fsspec options per protocol for remote sources, e.g. {s3: {key: ..., secret: ...}}. "
        "Secrets: never logged or stored (shown as **********), so deployments take them from the worker's "
        "environment instead (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...).",
    )
    val_fraction: float = Field(0.05, ge=0.0, lt=0.5, description="Share of documents for validation.")
    test_fraction: float = Field(0.10, gt=0.0, lt=0.5, description="Share of documents for test.")
    near_dup_threshold: float | None = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="Drop a document whose estimated Jaccard similarity (MinHash over word n-grams) to an earlier "
        "document of the batch, to one already trained on, or to a frozen eval document (then: leakage) is at least "
        "this; null turns near-duplicate detection off (exact duplicates are always dropped).",
    )
    near_dup_ngram: int = Field(3, ge=1, le=8, description="Words per shingle for near-duplicate detection.")
    task_runner: Literal["auto", "process", "thread", "dask"] = Field(
        "auto",
        description="Runs the per-file work (read, clean, GX file suite, tokenize): process = a local process pool; "
        "thread = in this process; dask = a Dask cluster (data.cluster, or a LocalCluster of data.workers); "
        "auto = dask when data.cluster is set, a process pool when there is more than data.parallel_min_mb of new "
        "data, otherwise this process (starting workers costs seconds).",
    )
    workers: int | None = Field(None, ge=1, description="Worker processes (default: this machine's cores).")
    cluster: str | None = Field(None, description="Address of an existing Dask scheduler, e.g. tcp://host:8786.")
    parallel_min_mb: float = Field(64.0, ge=0.0, description="With task_runner auto: new data that warrants workers.")


class TokenizerConfig(_Frozen):
    """Byte-level BPE trained from scratch on the training split."""

    vocab_size: int = Field(2048, ge=260, description="Target vocabulary size, special tokens included.")
    min_frequency: int = Field(2, ge=1, description="Merges seen fewer times than this are dropped.")
    path: str | None = Field(None, description="Reuse this saved tokenizer instead of training one.")


class ModelConfig(_Frozen):
    """Architecture of the causal LM built from scratch."""

    architecture: Literal["llama", "gpt2"] = "llama"
    n_layer: int = Field(2, ge=1)
    n_embd: int = Field(128, ge=8)
    n_head: int = Field(4, ge=1)
    intermediate_size: int | None = Field(None, description="MLP width; default 4 x n_embd (gpt2), 8/3 x (llama).")
    block_size: int = Field(128, ge=8, description="Context length and packed block length.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    base: str | None = Field(
        None,
        description="Continue a pretrained causal LM instead of starting from scratch (lmloop run --from): "
        "a model folder or hf:org/name[@revision]; its architecture and tokenizer replace the ones above.",
    )
    allow_pickle_weights: bool = Field(
        False,
        description="Load a pretrained base whose weights are pickle files only (pytorch_model.bin). A pickle "
        "can run code when loaded: set this only for a source you trust. Safetensors need nothing.",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class TrainConfig(_Frozen):
    """Optimisation. Batch size is per device, in packed blocks."""

    max_steps: int = Field(300, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(3e-3, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine floor as a share of the peak.")
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.1, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    log_every: int = Field(25, ge=1, description="Steps between metric logs; the loss is synced only then.")
    seed: int = 1337
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = Field(False, description="torch.compile the model (pays a warm-up; best on GPU).")
    checkpoint_every: int = Field(
        100, ge=1, description="Steps between checkpoints (also saved at the end and on SIGTERM)."
    )
    checkpoint_minutes: float = Field(
        5.0, gt=0, description="Minutes between checkpoints, beside the step interval (whichever comes first)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Complete checkpoints kept; older ones are deleted.")
    eval_every: int | None = Field(None, ge=1, description="Steps between validation-loss evaluations.")
    eval_batches: int = Field(20, ge=1, description="Validation batches per periodic evaluation.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without a better validation loss."
    )
    nproc: int = Field(1, ge=1, description="Data-parallel processes on this machine (launched with torchrun).")
    micro_batch_size: int | Literal["auto"] = Field(
        "auto",
        description="Blocks per forward/backward. The rows per optimizer step stay batch_size x grad_accum; "
        "auto: on CUDA the largest power-of-two share of them that fits the card (probed once, cached under "
        "LMLOOP_HOME/cache), elsewhere batch_size.",
    )
    chunked_loss: bool = Field(
        False,
        description="LM head + cross-entropy in chunks with gradients in the forward pass (no full logits in "
        "memory). Off by default: on an H200 it ran 5% slower than the compiled model's own loss.",
    )
    attention: Literal["auto", "cudnn", "flash", "efficient", "math"] = Field(
        "auto",
        description="Scaled-dot-product attention kernel tried first on CUDA (the others remain fallbacks); "
        "auto: cuDNN's, the fastest on Hopper cards.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for training; default: $OMP_NUM_THREADS where set, else the machine's physical cores.",
    )

    @model_validator(mode="after")
    def _micro_batch_divides(self) -> TrainConfig:
        rows = self.batch_size * self.grad_accum
        if isinstance(self.micro_batch_size, int) and (self.micro_batch_size < 1 or rows % self.micro_batch_size):
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must divide batch_size x grad_accum ({rows})")
        return self


class FinetuneConfig(TrainConfig):
    """Optimisation of warm starts (``lmloop finetune``, continual cycles): shorter, gentler. Its own
    defaults, so an override of one key (``--set finetune.max_steps=30``) keeps the others."""

    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(1e-3, gt=0.0)
    warmup_steps: int = Field(15, ge=0)
    checkpoint_every: int = Field(
        50, ge=1, description="Steps between checkpoints (also saved at the end and on SIGTERM)."
    )
    epochs: int = Field(
        10, ge=1, description="Classification: passes over the training split at most (max_steps does not apply)."
    )
    patience: int = Field(
        2,
        ge=1,
        description="Classification: stop after this many epochs without a better validation macro-F1; "
        "the best epoch's weights are kept.",
    )
    classifier_learning_rate: float = Field(
        5e-4,
        gt=0.0,
        description="Classification: peak learning rate (linear warm-up over the first epoch's "
        "first tenth, linear decay).",
    )
    pretrained_classifier_learning_rate: float = Field(
        5e-5,
        gt=0.0,
        description="Classification on a pretrained checkpoint (--from a folder or hf:...): peak learning rate "
        "(pretrained weights want a gentler one than lmloop's own small models).",
    )
    tapt_epochs: int = Field(
        10,
        ge=0,
        description="Classification: task-adaptive pretraining, passes of causal-LM training over the training "
        "texts (labels unused) before the classification head is trained; 0 turns it off.",
    )
    tapt_learning_rate: float = Field(1e-3, gt=0.0, description="Classification: peak learning rate of that step.")
    classifier_lm_weight: float = Field(
        0.5,
        ge=0.0,
        description="Classification: weight of the language-modelling loss kept on beside the classification "
        "loss while the head trains (regularises small labelled sets); 0 turns it off.",
    )


class EvalConfig(_Frozen):
    """Held-out evaluation."""

    batch_size: int = Field(32, ge=1)
    stride: int | None = Field(None, description="Sliding-window stride; default half the block size.")
    max_documents: int | None = Field(
        2000,
        ge=1,
        description="Documents scored per test split or gate slice at most (a deterministic sample by document "
        "hash, the same for every model); None: all.",
    )
    max_tokens: int | None = Field(
        300_000, ge=1, description="Tokens scored per test split or gate slice at most (same sample); None: all."
    )
    samples: int = Field(3, ge=0, description="Generated samples logged for a look at the model.")
    prompts: list[str] = Field(
        default_factory=list,
        description="Fixed prompts for the samples table; default: the first words of test documents.",
    )
    max_new_tokens: int = Field(40, ge=1)
    test_sources: list[str] = Field(
        default_factory=list,
        description="A team's own test file(s) for classification: both lmloop's classifier and the TF-IDF + LR "
        "baseline are scored on exactly their rows (after the same cleaning), and training never sees them.",
    )
    references: str | None = Field(
        None, description="JSONL of {prompt, reference} for BLEU/chrF; default: _meta/references.jsonl beside the data."
    )


class RegistryConfig(_Frozen):
    """Where the model lands in MLflow."""

    experiment: str = "lmloop"
    model_name: str = "lmloop-lm"


class RetrainPolicy(_Frozen):
    """When a continual cycle retrains: drift, enough new data, or an old champion; otherwise the batch is
    deferred (kept, counted, trained with the next batch that triggers) and the cycle ends in seconds."""

    drift_auc: float = Field(
        0.55,
        ge=0.5,
        le=1.0,
        description="Content drift: a TF-IDF + logistic-regression classifier tells the batch from trained text with "
        "a cross-validated ROC AUC above this, and above what chance reaches at the sample sizes (99th percentile).",
    )
    fit_bits: float | None = Field(
        0.05,
        ge=0.0,
        description="Fit drift: the champion's bits/byte on the batch exceed its own on the frozen reference slices "
        "by more than this. None: not a trigger.",
    )
    new_documents: int | None = Field(
        10_000,
        ge=1,
        description="Retrain once the documents not trained on yet (this batch plus the deferred ones) reach this "
        "many. None: never for size alone.",
    )
    max_age_days: float | None = Field(
        30.0,
        gt=0.0,
        description="Retrain when the champion is older than this many days (at the next batch). None: no maximum.",
    )
    sample: int = Field(
        1000, ge=20, description="Documents per side for the drift measures (batch, trained text, reference slices)."
    )
    always: bool = Field(False, description="Retrain on every batch (the policy is measured and logged, not applied).")


class ContinualConfig(_Frozen):
    """The scheduled continual-learning cycle."""

    landing: str | None = Field(None, description="Folder where new data arrives; default LMLOOP_HOME/landing.")
    replay_ratio: float = Field(1.0, ge=0.0, description="Old training documents replayed per new one.")
    margin: float = Field(0.0, description="Bits/byte the new-slice improvement's 95% CI must stay above.")
    tolerance: float = Field(0.02, ge=0.0, description="Bits/byte any old slice may get worse (forgetting guard).")
    drift_bits: float | None = Field(
        0.1,
        ge=0.0,
        description="A label whose new documents the champion fits worse than its old ones by more than this "
        "(bits/byte) has drifted: its old documents no longer hold, so the forgetting guard judges old slices on "
        "the other documents. Unlabelled text never counts as drifted. None: every old document stays guarded.",
    )
    settle_seconds: float = Field(
        2.0,
        ge=0.0,
        description="A new landing file is taken only when its size and mtime stay the same across this many "
        "seconds (a writer still appending waits for the next cycle). Or write to NAME.partial and rename.",
    )
    bootstrap_samples: int = Field(1000, ge=100, description="Paired bootstrap resamples.")
    cron: str = Field("0 * * * *", description="Schedule of the continual deployment (lmloop deploy).")
    classification: dict[Literal["accuracy", "macro_f1"], float] = Field(
        default_factory=dict,
        description="Gate criterion (c): metric -> allowed drop, for a linear probe on each model's features, "
        "cross-validated on the labelled documents of the frozen slices. Empty: not checked.",
    )
    policy: RetrainPolicy = Field(RetrainPolicy(), description="When a cycle retrains (else the batch is deferred).")
    approval: Literal["none", "required"] = Field(
        "none",
        description="required: a promotion the gate recommends waits for a person (lmloop approve/reject BATCH, or "
        "the Prefect UI's resume form); unanswered within approval_hours it is rejected.",
    )
    approval_hours: float = Field(72.0, gt=0.0, description="How long a promotion waits for its approval.")


class PipelineConfig(_Frozen):
    """Everything one training run needs."""

    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    registry: RegistryConfig = RegistryConfig()
    finetune: FinetuneConfig = Field(
        FinetuneConfig(), description="Optimisation for `lmloop finetune` and continual cycles (warm starts)."
    )
    continual: ContinualConfig = ContinualConfig()

    def digest(self) -> str:
        """Stable hash of the effective config (tags a model version)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def flat(self) -> dict[str, Any]:
        """``section.key -> value`` for MLflow params."""
        return {f"{s}.{k}": v for s, sec in self.model_dump(mode="json").items() for k, v in sec.items()}
