"""The commands that operate what training made: ``deploy``, ``rollback``, ``status``, ``generate``, ``ui``,
``sample-data`` and ``config show``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.app import (
    ConfigOpt,
    JsonOpt,
    SetOpt,
    app,
    config_app,
    console,
    emit_json,
    load,
    runnable,
    store_answers,
    user_error,
)
from lmloop.core import settings
from lmloop.core.errors import UserError
from lmloop.ops.preflight import check_model


@app.command()
def deploy(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    cron: Annotated[str | None, typer.Option(help="Schedule of the continual cycle; default continual.cron.")] = None,
    interval: Annotated[
        float | None,
        typer.Option(min=1, help="Run the continual cycle every this many seconds instead of on the cron schedule."),
    ] = None,
    pool: Annotated[
        str | None, typer.Option(help="Register in this process work pool for `prefect worker start` instead.")
    ] = None,
    notify_webhook: Annotated[
        str | None,
        typer.Option(help="Also create a Prefect Automation that POSTs to this URL whenever @champion is promoted."),
    ] = None,
) -> None:
    """Serve the deployments (continual on a schedule, training on demand) against PREFECT_API_URL,
    or with --pool register them in a work pool and return."""
    import os

    cfg = load(config, set_)
    if not os.environ.get("PREFECT_API_URL"):
        console.print(
            f"[yellow]PREFECT_API_URL is not set: start `{runnable('prefect')} server start` (or `{runnable('lmloop')} "
            "ui`) and point at it, e.g.[/yellow]",
            soft_wrap=True,
        )
        console.print("  export PREFECT_API_URL=http://127.0.0.1:4200/api")
        raise typer.Exit(2)
    if notify_webhook:
        from flows.deploy import notify_on_promotion

        automation = notify_on_promotion(notify_webhook, cfg.registry.model_name)
        console.print(
            f"automation {automation}: each promotion of {cfg.registry.model_name} POSTs to the webhook", soft_wrap=True
        )
    if pool:
        from flows.deploy import deploy_to_pool

        deploy_to_pool(cfg, pool, cron, interval=interval)
        console.print(f"deployments continual/continual and training/training registered in work pool {pool!r}")
        console.print(
            f"start workers (any machine with this checkout): {runnable('prefect')} worker start --pool {pool}"
        )
        return
    from flows.deploy import serve_deployments

    every = f"every {interval:g} s" if interval is not None else f"cron {cron or cfg.continual.cron}"
    console.print(f"serving deployments continual/continual ({every}) and training/training")
    serve_deployments(cfg, cron, interval)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded on the versions and in the gate history.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Version to make champion; default @previous_champion.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also to a version the gate rejected (its reason is recorded).")
    ] = False,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move @champion back to an earlier version and record why."""
    cfg = load(config, set_)
    from lmloop.data.state import State
    from lmloop.promotion.moves import rollback as move_back

    try:
        result = move_back(cfg.registry.model_name, reason, State(settings.home().state), to_version=to, force=force)
    except UserError as exc:  # unknown version, no previous champion, a rejected version without --force
        raise user_error(exc, "rollback refused") from exc
    except Exception as exc:  # the store is unreachable
        console.print(f"[red]rollback failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{result.model_name}: champion v{result.previous_champion} -> v{result.champion_version} ({reason})")
    if as_json:
        emit_json(result.model_dump(mode="json"))


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
    from lmloop.data.sample_data import write_corpus

    summary = write_corpus(out, seed=seed, shift=shift, docs=docs, files=files)
    console.print(
        f"wrote {summary['documents']} documents ({summary['bytes'] / 1e6:.2f} MB) to {out}; "
        f"true entropy {summary['true_bits_per_byte']:.3f} bits/byte"
    )
    if as_json:
        emit_json(summary)


@app.command()
def status(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    runs: Annotated[int, typer.Option(help="How many recent runs to list.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Champion, challenger and previous champion with key metrics; the last gate decisions and runs."""
    cfg = load(config, set_)
    from lmloop.ops.status import collect

    with store_answers(as_json):
        info = collect(
            cfg.registry.model_name,
            cfg.registry.experiment,
            settings.home(),
            tracking_uri=settings.tracking_uri(),
            runs=runs,
        )
    table = Table(title=f"{info['model_name']} ({info['versions']} versions) — {info['tracking_uri']}")
    for column in ("alias", "version", "created", "parent", "bits/byte*", "perplexity*", "gate"):
        table.add_column(column)
    for alias, v in info["aliases"].items():
        if v is None:
            table.add_row(alias, "-", "", "", "", "", "")
            continue
        m = v["metrics"]
        bpb, ppl = m.get("test_bits_per_byte"), m.get("test_perplexity")
        table.add_row(
            alias,
            v["version"],
            (v["created"] or "")[:16].replace("T", " "),
            v["parent_version"] or "",
            f"{bpb:.4f}" if bpb is not None else "",
            f"{ppl:.2f}" if ppl is not None else "",
            v["gate_decision"] or "",
        )
    console.print(table)
    console.print("[dim]* on each version's own test split: different documents, not comparable across rows[/dim]")
    for cmp in info["comparisons"]:
        console.print(f"v{cmp['version']} vs v{cmp['against']} on the slices the gate scored both on (bits/byte):")
        for slice_, bpb in sorted(cmp["slices"].items()):
            if {"champion", "challenger"} <= bpb.keys():
                console.print(
                    f"  {slice_}: v{cmp['version']} {bpb['challenger']:.4f} vs v{cmp['against']} {bpb['champion']:.4f}"
                )
    for event in info["gate_decisions"]:
        what = (
            f"rollback v{event.get('from')} -> v{event.get('to')}"
            if event.get("event") == "rollback"
            else f"v{event.get('challenger')} {'promoted' if event.get('promoted') else 'rejected'}"
        )
        console.print(f"  gate: {what} — {event.get('reason', '')}")
    if info["cycles"]:
        console.print("continual cycles (monitor-" + info["model_name"] + "):")
        for line in info["cycles"]:
            console.print(f"  {line}", markup=False)
    if info["deferred_files"]:
        console.print(
            f"  {info['deferred_files']} landing file(s) deferred, waiting for a batch that triggers retraining"
        )
    for waiting in info["awaiting_approval"]:
        console.print(
            f"[yellow]waiting for approval:[/yellow] {waiting['batch']} (v{waiting['challenger']} over "
            f"v{waiting['champion']}): {runnable('lmloop')} approve {waiting['batch']}  |  reject {waiting['batch']} --reason ...",
            soft_wrap=True,
        )
    runs_table = Table(title="Last runs")
    for column in ("started", "name", "status", "bits/byte", "run id"):
        runs_table.add_column(column)
    for r in info["runs"]:
        bpb = r["test_bits_per_byte"]
        runs_table.add_row(
            (r["started"] or "")[:16].replace("T", " "),
            r["name"],
            r["status"],
            f"{bpb:.4f}" if bpb else "",
            r["run_id"],
        )
    console.print(runs_table)
    if as_json:
        emit_json(info)


@app.command()
def generate(
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Text to continue; repeatable.")],
    alias: Annotated[str, typer.Option("--alias", help="Registered model alias or version number.")] = "champion",
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt.")] = 40,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue prompts with a registered model (default @champion), sampling top-k 50."""
    cfg = load(config, set_)
    from transformers import AutoModelForCausalLM

    from lmloop.evaluation.evaluate import generate_samples
    from lmloop.registry import model_registry
    from lmloop.training.model import load_pretrained
    from lmloop.training.tokenizer import load_tokenizer

    name = cfg.registry.model_name
    try:
        version = check_model(name, alias)
    except UserError as exc:
        raise user_error(exc) from exc
    try:
        local = model_registry.fetch_model(name, version, settings.home().models / name / version)
    except Exception as exc:  # the store is unreachable, or the model's files are damaged
        message = settings.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        console.print(f"[red]generate failed:[/red] {escape(message)}", soft_wrap=True)
        if as_json:
            emit_json({"status": "failed", "error": message, "model_name": name, "model_version": version})
        raise typer.Exit(1) from exc
    model = load_pretrained(AutoModelForCausalLM, local["model_dir"])
    samples = generate_samples(
        model, load_tokenizer(local["tokenizer_dir"]), prompt, max_new_tokens=max_new_tokens, seed=seed
    )
    for sample in samples:
        sys.stdout.write(f"{sample['prompt']}{sample['completion']}\n")
    console.print(f"[dim]{name} v{version} ({alias})[/dim]")
    if as_json:
        emit_json({"model_name": name, "model_version": version, "samples": samples})


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = "127.0.0.1",
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI port.")] = 5000,
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    prefect: Annotated[bool, typer.Option(help="Also start the Prefect server.")] = True,
) -> None:
    """Start the MLflow UI on the project's store and the Prefect server; print both URLs; Ctrl-C stops both."""
    from lmloop.ops.servers import run_ui

    home = settings.home().path
    raise typer.Exit(
        run_ui(
            host,
            mlflow_port=mlflow_port,
            prefect_port=prefect_port if prefect else None,
            console=console,
            home=home,
            tracking_uri=settings.tracking_uri(),
            artifact_root=settings.artifact_root(),
        )
    )


@config_app.command("show")
def config_show(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective config: the preset or YAML, then LMLOOP_SECTION__KEY variables, then --set."""
    import yaml

    from lmloop.core.presets import env_overrides, resolve_preset

    cfg = load(config, set_)
    comments = [  # one line each however narrow the terminal: a wrapped comment would run into the YAML
        f"# from {resolve_preset(config, settings.preset_dirs())}; "
        f"environment: {settings.redact_assignments(env_overrides()) or 'none'}; "
        f"--set: {settings.redact_assignments(set_ or []) or 'none'}",
        f"# LMLOOP_HOME={settings.home().root}  tracking URI={settings.redact(settings.tracking_uri())}",
    ]
    for comment in comments:
        console.print(comment, style="dim", soft_wrap=True, markup=False, highlight=False)
    payload = cfg.model_dump(mode="json")
    sys.stdout.write(yaml.safe_dump(payload, sort_keys=False))
    if as_json:
        emit_json(payload)
