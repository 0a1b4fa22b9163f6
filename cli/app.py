"""The ``lmloop`` Typer app, its shared options, and what every command does alike: load the config, check
before a run opens, tell a user's mistake in one line, print the summary and the JSON line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lmloop.core import settings
from lmloop.core.config import ConfigError
from lmloop.core.errors import UserError
from lmloop.core.presets import load_config

if TYPE_CHECKING:
    from lmloop.registry.values import ModelSummary

settings.freeze_heap_at_exit()  # first, so it runs last at exit

app = typer.Typer(
    help="Keep a language model learning: validate text, train, evaluate and register LMs.", no_args_is_help=True
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console(stderr=True)

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Preset name (tiny, small, ...) or YAML file.")]
WarmConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Preset name or YAML file; default: none (architecture, tokenizer and block size come from the "
        "model started from, the rest from the defaults).",
    ),
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: section.key=value.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON summary object as the last stdout line.")]


DEBUG = {"on": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for user errors too.")] = False,
) -> None:
    settings.configure_environment()
    DEBUG["on"] = debug


def user_error(exc: BaseException, what: str = "error") -> typer.Exit:
    """One line naming the cause and the fix; the traceback only with --debug. Exit code 2."""
    console.print(f"[red]{what}:[/red]", end=" ")
    console.print(str(exc), soft_wrap=True, markup=False, highlight=False)
    if DEBUG["on"]:
        console.print_exception()
    return typer.Exit(2)


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def print_summary(result: ModelSummary, title: str) -> None:
    table = Table(title=title, show_header=False)
    for key in ("run_id", "model_name", "model_version"):
        table.add_row(key, str(getattr(result, key)))
    table.add_row("aliases", ", ".join(result.aliases) or "-")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(
        f"Look at it: {look_at(result.model_name)} (version {result.model_version}, alias "
        f"{', '.join(result.aliases) or 'none'})",
        soft_wrap=True,  # one line, whatever the terminal's width: it is copied as it is
    )


def look_at(model: str) -> str:
    """Where to see ``model``: a link only when an MLflow UI answers now (``lmloop ui`` running, a team
    server); else the command that starts one (a link to a server that is not there is a dead link)."""
    from lmloop.ops.servers import answers

    ui = settings.mlflow_ui_url()
    if answers(f"{ui}/health"):
        return f"{ui}/#/models/{model}"
    return f"[bold]{runnable('lmloop')} ui[/bold] (it prints the MLflow and Prefect addresses), then Models → {model}"


def runnable(program: str) -> str:
    from lmloop.ops.servers import runnable

    return runnable(program)


def load(config: str | None, overrides: list[str] | None) -> Any:
    try:
        return load_config(config, overrides, settings.preset_dirs())
    except ConfigError as exc:
        raise user_error(exc, "config error") from exc


def preflight(check: Any, as_json: bool) -> None:
    """A check that needs no Prefect server and opens no MLflow run: a mistake is told at once; the notes
    it returns (a likely mistake that does not stop the run) are printed as warnings."""
    try:
        notes = check()
    except UserError as exc:
        if as_json:
            emit_json({"status": "error", "error": str(exc), "model_version": None})
        raise user_error(exc) from exc
    for note in notes if isinstance(notes, list) else []:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", soft_wrap=True)


def sources(data: list[str] | None, cfg: Any) -> list[str]:
    sources = list(data or cfg.data.sources)
    if not sources:
        raise UserError("no data: pass --data PATH (a file, folder or glob; repeatable) or set data.sources")
    return sources


@contextmanager
def store_answers(as_json: bool) -> Iterator[None]:
    """A tracking store that cannot be reached (or refuses) is one line naming it, exit 1, and the JSON
    line still printed: not a traceback, and never an answer made of "nothing there"."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        first = (exc.message.strip().splitlines() or [""])[0][:300]
        message = settings.redact(f"the MLflow store at {settings.tracking_uri()} did not answer: {first}")
        console.print(f"[red]failed:[/red] {escape(message)}", soft_wrap=True)
        if as_json:
            emit_json({"status": "failed", "error": message, "model_version": None})
        raise typer.Exit(1) from exc
