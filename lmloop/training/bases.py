"""Pretrained bases: a local Hugging Face model folder, or a hub id (``hf:org/name[@revision]``) resolved
through the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``), downloaded only where the network allows.

A base is checked before anything trains: a ``config.json`` and a tokenizer, weights in safetensors (a
pickle ``.bin`` can run code when it is loaded: refused unless ``model.allow_pickle_weights``), never
``trust_remote_code``. Its architecture is read from ``config.json`` by transformers' Auto mappings, not by
name: encoders (BERT, RoBERTa, DeBERTa, MiniLM) pool their first token for classification, decoders (GPT-2,
Llama, Qwen2, Mistral) their last. What it is, its revision and the sha256 of its weight files become the
run's lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from lmloop.core.errors import UserError
from lmloop.core.values import Value

HUB = "hf:"
SAFE_WEIGHTS = ("*.safetensors",)
PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


class BaseUnavailable(UserError):
    """A base that cannot be had here: a folder that is not a model, a hub id neither cached nor downloadable."""


class UnsafeWeights(UserError):
    """A base whose weights are pickles only, without the explicit opt-in."""


class PretrainedBase(Value):
    """A checked pretrained model folder and where it came from."""

    source: str  # "folder" or "hub"
    id: str  # the folder, or the hub id (org/name)
    dir: str  # the folder transformers loads (the cache's snapshot for a hub id)
    revision: str | None = None  # the revision asked for (hub)
    commit: str | None = None  # the snapshot's commit hash (hub)
    model_type: str
    encoder: bool
    max_positions: int
    weights_sha256: str
    pickle_weights: bool = False
    license: str | None = None

    @property
    def spec(self) -> str:
        return f"{HUB}{self.id}" + (f"@{self.revision}" if self.revision else "") if self.source == "hub" else self.id

    def lineage(self) -> dict[str, str]:
        """MLflow tags (and the registered version's description) that say what the model started from."""
        tags = {
            "lmloop.base.source": self.source,
            "lmloop.base.id": self.id,
            "lmloop.base.model_type": self.model_type,
            "lmloop.base.weights_sha256": self.weights_sha256,
        }
        if self.commit or self.revision:
            tags["lmloop.base.revision"] = self.commit or str(self.revision)
        if self.license:
            tags["lmloop.base.license"] = self.license
        return tags


def is_pretrained(ref: str) -> bool:
    """Does ``--from REF`` name a pretrained base (``hf:...``, or a path) rather than a registered alias or
    version? Registry aliases and versions never contain a path separator; a folder in the current directory
    is ``./name`` (a bare ``name`` stays an alias, even beside a folder of that name)."""
    return ref.startswith(HUB) or os.sep in ref or "/" in ref or ref.startswith((".", "~"))


def is_encoder(model_type: str) -> bool:
    """An encoder-only (masked-LM) architecture: it pools its first token and has no causal-LM objective."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def is_causal(model_type: str) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not is_encoder(model_type)


def resolve(ref: str, *, allow_pickle: bool = False, checksum: bool = True) -> PretrainedBase:
    """The checked base behind ``ref`` (``hf:org/name[@revision]`` or a folder); a clear error naming ``ref``
    and what to do otherwise. ``checksum=False`` (a preflight check) skips reading every weight file for
    ``weights_sha256``: the task that records the lineage hashes them once."""
    if ref.startswith(HUB):
        repo, _, revision = ref.removeprefix(HUB).partition("@")
        folder, commit = _from_hub(ref, repo, revision or None)
        return _describe(
            folder, "hub", repo, allow_pickle=allow_pickle, checksum=checksum, revision=revision or None, commit=commit
        )
    folder = Path(ref).expanduser().resolve()
    if not folder.is_dir():
        raise BaseUnavailable(
            f"--from {ref}: no such folder (a base is a registered alias or version, a model folder, or hf:org/name)"
        )
    return _describe(folder, "folder", str(folder), allow_pickle=allow_pickle, checksum=checksum)


def _from_hub(ref: str, repo: str, revision: str | None) -> tuple[Path, str]:
    """The cached snapshot of ``repo`` at ``revision`` (downloaded first where the network allows)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo):
        raise BaseUnavailable(f"--from {ref}: {repo!r} is not a hub id (hf:org/name, optionally @revision)")
    wanted = ["*.json", *SAFE_WEIGHTS, "*.txt", "*.model", "README.md", "LICENSE*"]
    try:
        folder = snapshot_download(repo, revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        folder = None
    if folder is None and not _offline():
        try:
            folder = snapshot_download(repo, revision=revision, allow_patterns=wanted)
        except Exception as exc:  # no network, unknown repo, gated: the same advice
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            raise BaseUnavailable(
                _fetch_hint(ref, repo, revision, why=f"cannot be downloaded here ({reason})")
            ) from None
    if folder is None:
        raise BaseUnavailable(
            _fetch_hint(ref, repo, revision, why="is not in the Hugging Face cache and the hub is offline")
        )
    return Path(folder), Path(folder).name


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _fetch_hint(ref: str, repo: str, revision: str | None, *, why: str) -> str:
    from huggingface_hub import constants

    rev = f" --revision {revision}" if revision else ""
    return (
        f"--from {ref}: {repo} {why} (cache: {constants.HF_HUB_CACHE}). Fetch it ahead of time on a machine "
        f"that reaches the hub (hf download {repo}{rev}, with the same HF_HOME), or pass a local model folder"
    )


def _weights(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def weights_digest(files: list[Path]) -> str:
    """sha256 over the weight files' names and contents: the same weights, the same digest."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _describe(
    folder: Path,
    source: str,
    ident: str,
    *,
    allow_pickle: bool,
    checksum: bool,
    revision: str | None = None,
    commit: str | None = None,
) -> PretrainedBase:
    name = f"{HUB}{ident}" if source == "hub" else str(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BaseUnavailable(f"{name}: not a Hugging Face model folder (no config.json in {folder})")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise BaseUnavailable(f"{config_path}: unreadable model config ({exc})") from None
    model_type = config.get("model_type")
    if not model_type:
        raise BaseUnavailable(f"{config_path}: no model_type: transformers cannot tell its architecture")
    if config.get("auto_map"):
        raise BaseUnavailable(
            f"{name}: its architecture is custom code (auto_map in config.json); lmloop never runs a checkpoint's "
            "own code (trust_remote_code). Use a checkpoint of an architecture transformers ships."
        )
    safe, pickles = _weights(folder, SAFE_WEIGHTS), _weights(folder, PICKLE_WEIGHTS)
    if not safe and pickles and not allow_pickle:
        raise UnsafeWeights(
            f"{name}: its weights are pickle files only ({', '.join(p.name for p in pickles)}); loading a pickle can "
            "run code, so lmloop loads safetensors only. Convert them where you trust them "
            "(model.save_pretrained(dir, safe_serialization=True)), or, if you trust the source, "
            "--set model.allow_pickle_weights=true"
        )
    if not safe and not pickles:
        raise BaseUnavailable(f"{name}: no weight files (*.safetensors) in {folder}")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")):
        raise BaseUnavailable(f"{name}: no tokenizer files in {folder} (save the tokenizer beside the model)")
    positions = next((int(config[k]) for k in _POSITION_KEYS if isinstance(config.get(k), int)), 512)
    return PretrainedBase(
        source=source,
        id=ident,
        dir=str(folder),
        revision=revision,
        commit=commit,
        model_type=model_type,
        encoder=is_encoder(model_type),
        max_positions=positions,
        weights_sha256=weights_digest(safe or pickles) if checksum else "",
        pickle_weights=not safe,
        license=_license(folder, config),
    )


def _license(folder: Path, config: dict) -> str | None:
    """The license a checkpoint declares: its model card's front matter (``license:``), else its config."""
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(errors="replace")
        front = re.match(r"\A---\s*\n(.*?)\n---", text, re.S)
        if front and (found := re.search(r"^license:\s*['\"]?([^'\"\n]+)", front.group(1), re.M)):
            return found.group(1).strip()
    value = config.get("license")
    return str(value) if value else None


def lineage_markdown(tags: dict[str, str]) -> str:
    """What a model started from, for its registered version's description, from the lineage tags
    (:meth:`PretrainedBase.lineage`); empty when it did not start from a pretrained base."""
    if "lmloop.base.id" not in tags:
        return ""
    source = "hub" if tags["lmloop.base.source"] == "hub" else "folder"
    lines = [
        f"\n\n**Started from** the pretrained {tags['lmloop.base.model_type']} `{tags['lmloop.base.id']}` ({source})"
    ]
    if revision := tags.get("lmloop.base.revision"):
        lines.append(f"revision `{revision}`")
    lines.append(f"weights sha256 `{tags['lmloop.base.weights_sha256'][:16]}…`")
    if license_ := tags.get("lmloop.base.license"):
        lines.append(f"license {license_}")
    return ", ".join(lines) + "."
