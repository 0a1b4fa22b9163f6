"""Loading a configuration: a preset name or YAML file, then ``LMLOOP_SECTION__KEY`` variables, then ``--set
section.key=value``, each checked against the sections of :mod:`lmloop.core.config` (a did-you-mean for a
mistyped key); and the flows' knobs (a preset, max steps) applied to a config."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lmloop.core.config import ConfigError, PipelineConfig
from lmloop.core.errors import did_you_mean
from lmloop.core.settings import PROJECT_ROOT

SHIPPED_PRESETS = PROJECT_ROOT / "configs"


def resolve_preset(name_or_path: str, preset_dirs: list[Path] | None = None) -> Path:
    """A YAML path, or a preset name looked up in ``preset_dirs`` (default: the shipped ``configs/``; the CLI
    puts ``$LMLOOP_HOME/configs`` first)."""
    path = Path(name_or_path).expanduser()
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    roots = preset_dirs or [SHIPPED_PRESETS]
    for root in roots:
        candidate = root / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    presets = sorted({p.stem for root in roots if root.is_dir() for p in root.glob("*.yaml")})
    hint = did_you_mean(name_or_path, presets) or (f"; the presets: {', '.join(presets)}" if presets else "")
    raise ConfigError(f"{name_or_path}: no such config file or preset (looked in configs/){hint}")


def config_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every settable dotted key (``train.max_steps``, ...), for "did you mean" hints."""
    keys = []
    for name, field in (model or PipelineConfig).model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys.extend(config_keys(sub, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def unknown_key_hint(key: str) -> str | None:
    """Why ``key`` is not a config key, with the closest known ones; None when it is one (or lies inside a
    free-form mapping such as ``data.storage_options.s3``)."""
    model: type[BaseModel] = PipelineConfig
    for depth, part in enumerate(key.split(".")):
        if part not in model.model_fields:
            matches = difflib.get_close_matches(key, config_keys(), n=3, cutoff=0.6)
            where = ".".join(key.split(".")[:depth]) or "the config"
            hint = f"; did you mean {' or '.join(matches)}?" if matches else " (`lmloop config show` lists them)"
            return f"{key}: {where} has no key {part!r}{hint}"
        sub = model.model_fields[part].annotation
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    return f"{key} is a section, not a key; set one of its keys, e.g. {config_keys(model, key + '.')[0]}"


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``section.key=value`` (value parsed as YAML) to a raw config dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.max_steps=100")
    if hint := unknown_key_hint(key.strip()):
        raise ConfigError(f"--set {assignment!r}: {hint}")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError:  # not YAML (e.g. a cron expression starting with '*'): the text itself
        node[leaf] = value


ENV_PREFIX = "LMLOOP_"


def env_overrides(environ: dict[str, str] | None = None) -> list[str]:
    """``LMLOOP_TRAIN__MAX_STEPS=100`` -> ``train.max_steps=100``: section and key joined by a double
    underscore (variables without one, such as ``LMLOOP_HOME``, are not config)."""
    environ = dict(os.environ) if environ is None else environ
    out = []
    for key, value in sorted(environ.items()):
        if key.startswith(ENV_PREFIX) and "__" in key:
            out.append(f"{key[len(ENV_PREFIX) :].lower().replace('__', '.')}={value}")
    return out


def load_config(
    name_or_path: str | None = "tiny", overrides: list[str] | None = None, preset_dirs: list[Path] | None = None
) -> PipelineConfig:
    """Load a preset or YAML file, then ``LMLOOP_SECTION__KEY`` environment variables, then ``--set``
    overrides (last wins); validate. Errors name the file and the field."""
    source = "defaults"
    raw: dict[str, Any] = {}
    if name_or_path:
        path = resolve_preset(name_or_path, preset_dirs)
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    origins: dict[str, str] = {}  # key -> where its value came from, when not the file
    environment = env_overrides()
    for assignment in [*environment, *(overrides or [])]:
        apply_override(raw, assignment)
        key = assignment.partition("=")[0].strip()
        origins[key] = f"--set {assignment}" if assignment not in environment else f"environment {_env_name(key)}"
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_invalid(exc, source, origins)) from exc


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _invalid(exc: ValidationError, source: str, origins: dict[str, str]) -> str:
    """Each problem blamed on where its value came from: a ``--set``, an environment variable, or the file."""
    by_origin: dict[str, list[str]] = {}
    for error in exc.errors():
        key = ".".join(map(str, error["loc"]))
        origin = next((o for k, o in origins.items() if key == k or key.startswith(k + ".")), source)
        by_origin.setdefault(origin, []).append(_problem(error))
    return "; ".join(f"{origin}: invalid config: {'; '.join(problems)}" for origin, problems in by_origin.items())


def with_knobs(
    config: PipelineConfig,
    preset: str | None = None,
    max_steps: int | None = None,
    *,
    section: str = "train",
    preset_dirs: list[Path] | None = None,
) -> PipelineConfig:
    """The few settings a person changes when triggering a run by hand (the Prefect UI's form lists them
    first): ``preset`` replaces the whole config with a shipped or home preset, then ``max_steps`` sets
    ``<section>.max_steps``."""
    if preset:
        config = load_config(preset, None, preset_dirs)
    if max_steps is not None:
        updated = getattr(config, section).model_copy(update={"max_steps": max_steps})
        config = config.model_copy(update={section: type(updated).model_validate(updated.model_dump())})
    return config


def _problem(error: Any) -> str:
    key = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden" and (hint := unknown_key_hint(key)):
        return hint
    return f"{key}: {error['msg']}"
