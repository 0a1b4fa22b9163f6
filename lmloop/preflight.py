"""Checks that run before a flow opens an MLflow run, so a user's mistake (a path that names nothing, a
text column that is not there, no champion to start from) is one clear message and leaves no run behind."""

from __future__ import annotations

from lmloop.config import DataConfig
from lmloop.errors import NoModel
from lmloop.readers import ReadError, columns_of, missing_column
from lmloop.sources import discover


def check_data(sources: list[str], data: DataConfig, sample: int = 20) -> None:
    """The local sources name readable files, and the text column is where the config says: a refusal
    when none of the first ``sample`` structured files has it (a file or two without it are rejected one
    by one at validation, like any bad file). Remote sources are checked when they are read."""
    local = [s for s in sources if "://" not in s or s.startswith("file://")]
    if not local:
        return
    files, _ = discover(local, data.roots)
    seen: list[tuple[str, list[str]]] = []
    for source in [f for f in files if f.format != "txt"][:sample]:
        try:
            columns = columns_of(source)
        except (ReadError, OSError):  # a broken file is the validation report's business
            continue
        if columns is not None:
            if data.text_column in columns:
                return
            seen.append((source.uri, columns))
    if seen:
        raise ReadError(missing_column(seen[0][0], data.text_column, seen[0][1]))


def check_model(name: str, ref: str) -> str:
    """The version ``ref`` (an alias or a version number) of ``name`` names; NoModel when there is none."""
    from lmloop import tracking

    version = ref if ref.isdigit() else tracking.alias_version(name, ref)
    if version is None or not tracking.version_exists(name, version):
        what = f"version {ref}" if ref.isdigit() else f"version with alias {ref!r}"
        raise NoModel(f"{name!r} has no {what} yet: train one first (lmloop run), or see `lmloop status`")
    return version
