"""``lmloop`` command line. Heavy imports (Prefect, MLflow, torch) happen inside commands, after
:func:`lmloop.core.settings.configure_environment` has set the offline/telemetry defaults."""

from __future__ import annotations

import atexit
import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lmloop.core import settings
from lmloop.core.config import ConfigError, load_config
from lmloop.core.errors import DamagedModel, Rejected, UserError
from lmloop.ops.preflight import check_base, check_data, check_landing, check_model

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


def _user_error(exc: BaseException, what: str = "error") -> typer.Exit:
    """One line naming the cause and the fix; the traceback only with --debug. Exit code 2."""
    console.print(f"[red]{what}:[/red]", end=" ")
    console.print(str(exc), soft_wrap=True, markup=False, highlight=False)
    if DEBUG["on"]:
        console.print_exception()
    return typer.Exit(2)


class _QuietUserErrors(logging.Filter):
    """Prefect logs a failed task or flow with its traceback; for a user's mistake, or data the gate
    rejected, the message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError | Rejected | DamagedModel) and not DEBUG["on"]:
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_prefect_tracebacks() -> None:
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect configures its handlers lazily: have them now, to filter them
    quiet = _QuietUserErrors()
    for name in (None, "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(quiet)


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _print_summary(result: dict[str, Any], title: str) -> None:
    table = Table(title=title, show_header=False)
    for key in ("run_id", "model_name", "model_version"):
        table.add_row(key, str(result[key]))
    table.add_row("aliases", ", ".join(result["aliases"]) or "-")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(
        f"Look at it: [bold]{_runnable('lmloop')} ui[/bold], then open {settings.mlflow_ui_url()} → Models → "
        f"{result['model_name']} (version {result['model_version']}, alias {', '.join(result['aliases']) or 'none'})",
        soft_wrap=True,  # one line, whatever the terminal's width: it is copied as it is
    )


def _runnable(program: str) -> str:
    from lmloop.ops.servers import runnable

    return runnable(program)


def _load(config: str | None, overrides: list[str] | None) -> Any:
    try:
        return load_config(config, overrides, settings.preset_dirs())
    except ConfigError as exc:
        raise _user_error(exc, "config error") from exc


def _preflight(check: Any, as_json: bool) -> None:
    """A check that needs no Prefect server and opens no MLflow run: a mistake is told at once; the notes
    it returns (a likely mistake that does not stop the run) are printed as warnings."""
    try:
        notes = check()
    except UserError as exc:
        if as_json:
            _emit_json({"status": "error", "error": str(exc), "model_version": None})
        raise _user_error(exc) from exc
    for note in notes if isinstance(notes, list) else []:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", soft_wrap=True)


@contextmanager
def _prefect_api() -> Iterator[None]:
    """The Prefect API the flow reports to: ``PREFECT_API_URL`` when set, else a temporary server of this
    command's own on loopback, which dies with this process however it ends (kill -9 included), and which
    a Ctrl-C or SIGTERM does not stop before the flow has reported its last state."""
    import os

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lmloop.ops.servers import (
        free_port,
        guarded,
        prefect_server_command,
        running_prefect_api,
        start,
        stop,
        wait_http,
    )

    home = settings.home()
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    if running := running_prefect_api(home.path):  # `lmloop ui` serves this home: report there
        os.environ["PREFECT_API_URL"] = running
        with temporary_settings(updates={PREFECT_API_URL: running}):
            yield
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = start(guarded(prefect_server_command("127.0.0.1", port)), home.path / ".prefect" / "server.log")
    record = home.path / ".prefect" / "lmloop-server.json"
    record.write_text(json.dumps({"guard_pid": server.pid, "url": url}))
    try:
        wait_http(f"{url}/health", 180, server)
    except (TimeoutError, RuntimeError) as exc:
        stop(server)
        console.print(f"[red]the temporary Prefect server did not start:[/red] {exc}")
        console.print(
            f"Start one that lmloop commands share instead: `{_runnable('lmloop')} ui` in another terminal (its Prefect server is "
            "used automatically), or a team server and export PREFECT_API_URL=http://HOST:4200/api. "
            f"The server's log: {home.path / '.prefect' / 'server.log'}"
        )
        raise typer.Exit(1) from exc
    os.environ["PREFECT_API_URL"] = url
    # Stopped at interpreter exit, after Prefect has drained its log and event queues into it (a server
    # stopped earlier leaves those workers retrying a dead address); the guard covers every other ending.
    atexit.register(lambda: (stop(server, timeout=6), record.unlink(missing_ok=True)))
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (KeyboardInterrupt: the run ends KILLED, the resume hint is
    printed, exit 130), wherever it lands: before the flow starts, or while Prefect's own handler holds it
    (Prefect ends the flow run Crashed, then hands the signal back here) rather than killing the process with
    the MLflow run left RUNNING. Stop requests inside the flow take it first, at their safe points."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_flow(call: Any, as_json: bool) -> dict[str, Any]:
    """Run a flow; rejected data or a failed flow prints why, emits the JSON contract and exits 1 (2 for a
    user's mistake, 130 when interrupted)."""
    _quiet_prefect_tracebacks()
    try:
        with _sigterm_as_interrupt(), _prefect_api():
            return _run_flow_on_api(call, as_json)
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]interrupted[/yellow] ({exc or 'Ctrl-C'}); the MLflow run is marked KILLED.")
        console.print(f"Resume where it stopped with the same command: {_same_command()}", soft_wrap=True, markup=False)
        if as_json:
            _emit_json({"status": "interrupted", "error": str(exc), "model_version": None})
        raise typer.Exit(130) from exc


def _same_command() -> str:
    import shlex

    args, shown = sys.argv[1:], []
    for i, arg in enumerate(args):  # secret --set values are not printed: the hint says to give them again
        if i and args[i - 1] == "--set" or arg.startswith("--set="):
            prefix = "--set=" if arg.startswith("--set=") else ""
            arg = prefix + settings.redact_assignments([arg.removeprefix("--set=")])[0]
        shown.append(settings.redact(arg))
    return shlex.join([_runnable("lmloop"), *shown])


def _run_flow_on_api(call: Any, as_json: bool) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    from lmloop.data.gate import DataValidationError

    try:
        return call()
    except UserError as exc:
        if as_json:
            _emit_json({"status": "error", "error": str(exc), "model_version": None})
        raise _user_error(exc) from exc
    except DataValidationError as exc:
        console.print("[red]data rejected[/red] —", end=" ")
        console.print(exc.details, soft_wrap=True, markup=False, highlight=False)  # paths whole, never markup
        if exc.listing:
            console.print(f"the list: {exc.listing}", soft_wrap=True, markup=False, highlight=False)
        if as_json:
            _emit_json({"status": "rejected", "validation": {**exc.report, "success": False}, "model_version": None})
        raise typer.Exit(1) from exc
    except MlflowException as exc:  # the tracking server is down, or refused a request (after bounded retries)
        message = settings.redact(f"MLflow at {settings.tracking_uri()} failed: {exc.message[:2000]}")
        console.print(f"[red]failed:[/red] {message}")
        if exc.error_code == "INVALID_PARAMETER_VALUE":  # a refusal, not an outage: a rerun fails the same way
            console.print("Nothing was promoted. MLflow refused a value lmloop sent: please report it as a bug.")
        else:
            console.print("Nothing was promoted; re-run the same command to resume once MLflow is back.")
        if as_json:
            _emit_json({"status": "failed", "error": message, "model_version": None})
        raise typer.Exit(1) from exc
    except (ValueError, RuntimeError, OSError) as exc:  # a failed stage (a bug shows its traceback above)
        console.print(f"[red]failed:[/red] {exc}")
        if as_json:
            _emit_json({"status": "failed", "error": str(exc), "model_version": None})
        raise typer.Exit(1) from exc


def _sources(data: list[str] | None, cfg: Any) -> list[str]:
    sources = list(data or cfg.data.sources)
    if not sources:
        raise UserError("no data: pass --data PATH (a file, folder or glob; repeatable) or set data.sources")
    return sources


@app.command()
def run(
    config: ConfigOpt = "tiny",
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="File, folder or glob; repeatable.")] = None,
    set_: SetOpt = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Continue a pretrained causal LM instead of starting from scratch: a model folder or "
            "hf:org/name[@revision] (model.base).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the full training flow: ingest, validate, split, tokenizer, pack, pretrain, evaluate, register."""
    cfg = _load(config, set_)
    if base:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"base": base})})
    _preflight(lambda: check_data(_sources(data, cfg), cfg.data), as_json)
    if cfg.model.base:
        _preflight(lambda: check_base(cfg.registry.model_name, cfg.model.base, cfg.model), as_json)
    from flows.training import training_flow

    result = _run_flow(lambda: training_flow(config=cfg, data=data, run_name=run_name), as_json)
    _print_summary(result, "lmloop run")
    if as_json:
        _emit_json({"status": "ok", **result})


@app.command()
def finetune(
    task: Annotated[str, typer.Option("--task", help="lm (continued training) or classification (a new head).")] = "lm",
    base: Annotated[
        str,
        typer.Option(
            "--from",
            help="What to start from: a registered alias or version, a model folder (save_pretrained layout), "
            "or a hub id hf:org/name[@revision] read from the Hugging Face cache.",
        ),
    ] = "champion",
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="File, folder or glob; repeatable.")] = None,
    config: WarmConfigOpt = None,
    set_: SetOpt = None,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train LoRA adapters (peft), merged before registering.")
    ] = False,
    test_data: Annotated[
        list[str] | None,
        typer.Option("--test-data", help="Classification: your own test file(s); default eval.test_sources."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a registered or pretrained model: continued LM training, or a classification head on labelled data."""
    if task not in ("lm", "classification"):
        console.print(f"[red]--task must be lm or classification, not {task!r}[/red]")
        raise typer.Exit(2)
    cfg = _load(config, set_)
    _preflight(lambda: check_data(_sources(data, cfg), cfg.data, labels=task == "classification"), as_json)
    _preflight(lambda: check_base(cfg.registry.model_name, base, cfg.model), as_json)
    if test_data:
        _preflight(lambda: check_data(test_data, cfg.data), as_json)
    from flows.finetune import finetune_flow

    call = lambda: finetune_flow(task=task, config=cfg, data=data, base=base, lora=lora, test_data=test_data)  # noqa: E731
    result = _run_flow(call, as_json)
    _print_summary(result, f"lmloop finetune --task {task}")
    if task == "classification":
        m = result["metrics"]
        console.print(
            f"accuracy {m['accuracy']:.3f} (baseline TF-IDF + LR {m['baseline_accuracy']:.3f}), "
            f"macro-F1 {m['macro_f1']:.3f} (baseline {m['baseline_macro_f1']:.3f})"
        )
        if result.get("not_promoted"):
            console.print(
                f"[yellow]registered without an alias:[/yellow] {result['not_promoted']}. Use the baseline, or "
                "train longer / on more text; a version can still be aliased by hand in MLflow."
            )
    if as_json:
        _emit_json({"status": "ok", **result})


@app.command()
def continual(
    incoming: Annotated[
        str | None, typer.Option("--incoming", help="Landing folder; default LMLOOP_HOME/landing.")
    ] = None,
    config: WarmConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One continual-learning cycle: new files -> replay mix -> warm start from @champion -> gate -> promote?"""
    cfg = _load(config, set_)
    if incoming is not None:
        _preflight(lambda: check_landing(incoming), as_json)
    landing = Path(incoming or cfg.continual.landing or settings.home().landing)
    with _store_answers(as_json):
        result = _nothing_to_do(landing, cfg.registry.model_name)
    if result is None:
        from flows.continual import continual_flow

        result = _run_flow(lambda: continual_flow(config=cfg, incoming=incoming), as_json)
    verdict = {None: "nothing to do", True: "PROMOTED", False: "not promoted"}[result["promoted"]]
    console.print(f"continual: {verdict} — {result['reason']}", style="yellow" if result.get("warning") else None)
    for name, numbers in result["slices"].items():
        console.print(
            f"  {name}: previous champion v{result['previous_champion']} "
            f"{numbers['previous_champion_bits_per_byte']:.4f} vs challenger v{result['challenger']} "
            f"{numbers['challenger_bits_per_byte']:.4f} bits/byte ({numbers['documents']:.0f} docs"
            + (f", {numbers['documents_guarded']:.0f} still holding" if "documents_guarded" in numbers else "")
            + ")"
        )
    if as_json:
        _emit_json(result)


@contextmanager
def _store_answers(as_json: bool) -> Iterator[None]:
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
            _emit_json({"status": "failed", "error": message, "model_version": None})
        raise typer.Exit(1) from exc


def _nothing_to_do(landing: Path, name: str) -> dict[str, Any] | None:
    """A cycle's summary when there is nothing for it to do and no Prefect server is up to record it: told
    in a moment, without starting one. None when the flow should run."""
    import os

    from lmloop.continual.landing import has_work, nothing_new
    from lmloop.data.state import State
    from lmloop.ops.servers import running_prefect_api

    home = settings.home()
    if os.environ.get("PREFECT_API_URL") or running_prefect_api(home.path) or has_work(landing, State(home.state)):
        return None
    from lmloop.registry import tracking

    return nothing_new(landing, tracking.alias_version(name, "champion"))


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
) -> None:
    """Serve the deployments (continual on a schedule, training on demand) against PREFECT_API_URL,
    or with --pool register them in a work pool and return."""
    import os

    cfg = _load(config, set_)
    if not os.environ.get("PREFECT_API_URL"):
        console.print(
            f"[yellow]PREFECT_API_URL is not set: start `{_runnable('prefect')} server start` (or `{_runnable('lmloop')} "
            "ui`) and point at it, e.g.[/yellow]",
            soft_wrap=True,
        )
        console.print("  export PREFECT_API_URL=http://127.0.0.1:4200/api")
        raise typer.Exit(2)
    if pool:
        from flows.deploy import deploy_to_pool

        deploy_to_pool(cfg, pool, cron, interval)
        console.print(f"deployments continual/continual and training/training registered in work pool {pool!r}")
        console.print(
            f"start workers (any machine with this checkout): {_runnable('prefect')} worker start --pool {pool}"
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
    cfg = _load(config, set_)
    from lmloop.data.state import State
    from lmloop.promotion.moves import rollback as move_back

    try:
        result = move_back(cfg.registry.model_name, reason, State(settings.home().state), to, force=force)
    except UserError as exc:  # unknown version, no previous champion, a rejected version without --force
        raise _user_error(exc, "rollback refused") from exc
    except Exception as exc:  # the store is unreachable
        console.print(f"[red]rollback failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"{result['model_name']}: champion v{result['previous_champion']} -> v{result['champion_version']} ({reason})"
    )
    if as_json:
        _emit_json(result)


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
        _emit_json(summary)


@app.command()
def status(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    runs: Annotated[int, typer.Option(help="How many recent runs to list.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Champion, challenger and previous champion with key metrics; the last gate decisions and runs."""
    cfg = _load(config, set_)
    from lmloop.ops.status import collect

    with _store_answers(as_json):
        info = collect(cfg.registry.model_name, cfg.registry.experiment, settings.home(), runs=runs)
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
        _emit_json(info)


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
    cfg = _load(config, set_)
    from transformers import AutoModelForCausalLM

    from lmloop.evaluation.evaluate import generate_samples
    from lmloop.registry import tracking
    from lmloop.training.model import load_pretrained
    from lmloop.training.tokenizer import load_tokenizer

    name = cfg.registry.model_name
    try:
        version = check_model(name, alias)
    except UserError as exc:
        raise _user_error(exc) from exc
    try:
        local = tracking.fetch_model(name, version, settings.home().cache / "models" / name / version)
    except Exception as exc:  # the store is unreachable, or the model's files are damaged
        message = settings.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        console.print(f"[red]generate failed:[/red] {escape(message)}", soft_wrap=True)
        if as_json:
            _emit_json({"status": "failed", "error": message, "model_name": name, "model_version": version})
        raise typer.Exit(1) from exc
    model = load_pretrained(AutoModelForCausalLM, local["model_dir"])
    samples = generate_samples(model, load_tokenizer(local["tokenizer_dir"]), prompt, max_new_tokens, seed)
    for sample in samples:
        sys.stdout.write(f"{sample['prompt']}{sample['completion']}\n")
    console.print(f"[dim]{name} v{version} ({alias})[/dim]")
    if as_json:
        _emit_json({"model_name": name, "model_version": version, "samples": samples})


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
    raise typer.Exit(run_ui(host, mlflow_port, prefect_port if prefect else None, console, home / "logs", home))


@config_app.command("show")
def config_show(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective config: the preset or YAML, then LMLOOP_SECTION__KEY variables, then --set."""
    import yaml

    from lmloop.core.config import env_overrides, resolve_preset

    cfg = _load(config, set_)
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
        _emit_json(payload)
