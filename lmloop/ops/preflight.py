"""Checks that run before a flow opens an MLflow run, so a user's mistake (a path that names nothing, a
text column that is not there, no champion to start from) is one clear message and leaves no run behind."""

from __future__ import annotations

from pathlib import Path

from lmloop.core.config import DataConfig, ModelConfig
from lmloop.core.errors import NoModel, UserError, did_you_mean
from lmloop.data.readers import ReadError, columns_of, label_column_guess, missing_column, missing_label_column
from lmloop.data.sources import discover


def check_data(sources: list[str], data: DataConfig, sample: int = 20, *, labels: bool = False) -> list[str]:
    """The local sources name readable files, and the text column is where the config says: a refusal
    when none of the first ``sample`` structured files has it (a file or two without it are rejected one
    by one at validation, like any bad file). Remote sources are checked when they are read.

    The label column likewise: with ``labels`` (a classifier needs them) a file that has the text but not
    the labels is refused; otherwise a column that looks like labels under another name comes back as a
    note (the label slices of the evaluation would be missing), for the CLI to print."""
    local = [s for s in sources if "://" not in s or s.startswith("file://")]
    if not local:
        return []
    files, _ = discover(local, data.roots)
    seen: list[tuple[str, list[str]]] = []
    for source in [f for f in files if f.format != "txt"][:sample]:
        try:
            columns = columns_of(source)
        except (ReadError, OSError):  # a broken file is the validation report's business
            continue
        if columns is not None:
            if data.text_column in columns:
                return _check_labels(source.uri, columns, data, required=labels)
            seen.append((source.uri, columns))
    if seen:
        raise ReadError(missing_column(seen[0][0], data.text_column, seen[0][1]))
    return []


def _check_labels(uri: str, columns: list[str], data: DataConfig, *, required: bool) -> list[str]:
    if data.label_column in columns:
        return []
    guess = label_column_guess(data.label_column, columns, (data.text_column, data.id_column))
    message = missing_label_column(uri, data.label_column, columns, guess=guess)
    if required:
        raise ReadError(message)
    return [f"{message} (without labels, no per-label evaluation slices)"] if guess else []


def check_base(name: str, ref: str, model: ModelConfig) -> str:
    """What ``--from ref`` names exists and can be loaded here: a pretrained checkpoint (folder or hub id,
    safetensors, no custom code) or a registered version of ``name``. Returns the version or the spec."""
    from lmloop.training.bases import is_pretrained, resolve

    if is_pretrained(ref):
        return resolve(ref, allow_pickle=model.allow_pickle_weights, checksum=False).spec
    version = check_model(name, ref)
    from lmloop.registry import tracking
    from lmloop.training.pretrain import check_warm_start

    tags = tracking.client().get_model_version(name, version).tags
    check_warm_start(model, tags, f"{name} v{version}")  # a config that contradicts it: told before a run opens
    return version


def check_model(name: str, ref: str) -> str:
    """The version ``ref`` (an alias or a version number) of ``name`` names; NoModel when there is none."""
    from lmloop.registry import model_registry

    version = ref if ref.isdigit() else model_registry.alias_version(name, ref)
    if version is None or not model_registry.version_exists(name, version):
        what = f"version {ref}" if ref.isdigit() else f"version with alias {ref!r}"
        aliases = model_registry.model_aliases(name)
        if not ref.isdigit() and aliases:  # a mistyped alias of a model that has some: not "train one first"
            hint = did_you_mean(ref, sorted(aliases))
            known = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items()))
            raise NoModel(f"{name!r} has no alias {ref!r}{hint or ';'} its aliases: {known}")
        raise NoModel(f"{name!r} has no {what} yet: train one first (lmloop run), or see `lmloop status`")
    return version


def check_landing(folder: str) -> None:
    """A landing folder named on the command line exists: a typo there is a mistake to tell, not a quiet
    "nothing to do" (a configured landing folder that is not there yet stays a warning: data may come later)."""
    path = Path(folder).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise UserError(f"--incoming {folder}: not a folder; point it at the folder new files land in")
    siblings = [p.name for p in path.parent.iterdir() if p.is_dir()] if path.parent.is_dir() else []
    hint = did_you_mean(path.name, siblings)
    raise UserError(f"--incoming {folder}: no such folder{hint or '; create it, or point at the landing folder'}")
