"""``lmloop`` command line. Heavy imports (Prefect, MLflow, torch) happen inside commands, after
:func:`lmloop.settings.configure_environment` has set the offline/telemetry defaults."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lmloop import settings
from lmloop.config import ConfigError, load_config

app = typer.Typer(help="Keep a language model learning: validate text, train, evaluate and register LMs.")
console = Console(stderr=True)

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Preset name (tiny, small, ...) or YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: section.key=value.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON summary object as the last stdout line.")]


@app.callback()
def main() -> None:
    settings.configure_environment()


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _print_summary(result: dict[str, Any]) -> None:
    table = Table(title="lmloop run", show_header=False)
    for key in ("run_id", "model_name", "model_version"):
        table.add_row(key, str(result[key]))
    table.add_row("aliases", ", ".join(result["aliases"]) or "-")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(
        f"Look at it: [bold]mlflow ui --backend-store-uri {settings.tracking_uri()}[/bold] "
        f"then open http://127.0.0.1:5000 → Models → {result['model_name']} "
        f"(version {result['model_version']}, alias {', '.join(result['aliases']) or 'none'})"
    )


@app.command()
def run(
    config: ConfigOpt = "tiny",
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="File, folder or glob; repeatable.")] = None,
    set_: SetOpt = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the full training flow: ingest, validate, split, tokenizer, pack, pretrain, evaluate, register."""
    try:
        cfg = load_config(config, set_)
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc
    from flows.training import training_flow
    from lmloop.corpus import DataValidationError

    try:
        result = training_flow(config=cfg, data=data, run_name=run_name)
    except DataValidationError as exc:
        console.print(f"[red]data rejected[/red] — {exc}")
        if as_json:
            _emit_json({"status": "rejected", "validation": {**exc.report, "success": False}, "model_version": None})
        raise typer.Exit(1) from exc
    except (ValueError, RuntimeError, OSError) as exc:  # SourceError, ReadError, a failed stage
        console.print(f"[red]run failed:[/red] {exc}")
        if as_json:
            _emit_json({"status": "failed", "error": str(exc), "model_version": None})
        raise typer.Exit(1) from exc
    _print_summary(result)
    if as_json:
        _emit_json({"status": "ok", **result})


@app.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the corpus to.")],
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    shift: Annotated[
        bool, typer.Option("--shift", help="Drifted distribution: a new topic, changed statistics.")
    ] = False,
    docs: Annotated[int, typer.Option(help="Number of documents.")] = 4000,
    files: Annotated[int, typer.Option(help="Number of JSONL files.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Write a seeded synthetic corpus (topics as labels) with its true entropy in _meta/generator.json."""
    from lmloop.sample_data import write_corpus

    summary = write_corpus(out, seed=seed, shift=shift, docs=docs, files=files)
    console.print(
        f"wrote {summary['documents']} documents ({summary['bytes'] / 1e6:.2f} MB) to {out}; "
        f"true entropy {summary['true_bits_per_byte']:.3f} bits/byte"
    )
    if as_json:
        _emit_json(summary)
