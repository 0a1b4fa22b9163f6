"""Running a flow from a command: the Prefect API it reports to, signals, and how each way a flow can end
is told (a user's mistake, rejected data, MLflow down, a failed stage, an interrupt)."""

from __future__ import annotations

import atexit
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer

from cli.app import DEBUG, console, emit_json, runnable, user_error
from lmloop.core import settings
from lmloop.core.errors import DamagedModel, Rejected, UserError

T = TypeVar("T")


class _QuietUserErrors(logging.Filter):
    """Prefect logs a failed task or flow with its traceback; for a user's mistake, or data the gate
    rejected, the message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError | Rejected | DamagedModel) and not DEBUG["on"]:
            record.exc_info, record.exc_text = None, None
        return True


def quiet_prefect_tracebacks() -> None:
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect configures its handlers lazily: have them now, to filter them
    quiet = _QuietUserErrors()
    for name in (None, "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(quiet)


@contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect API the flow reports to: ``PREFECT_API_URL`` when set, else a temporary server of this
    command's own on loopback, which dies with this process however it ends (kill -9 included), and which
    a Ctrl-C or SIGTERM does not stop before the flow has reported its last state."""
    import os

    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    from lmloop.ops.servers import (
        free_port,
        guarded,
        prefect_server_command,
        running_prefect_api,
        start,
        stop,
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
    console.print(f"[dim]starting this command's Prefect server ({runnable('lmloop')} ui keeps one running)…[/dim]")
    server = start(guarded(prefect_server_command("127.0.0.1", port)), home.path / ".prefect" / "server.log")
    record = home.path / ".prefect" / "lmloop-server.json"
    record.write_text(json.dumps({"guard_pid": server.pid, "url": url}))
    try:
        _wait_saying(f"{url}/health", server)
    except (TimeoutError, RuntimeError) as exc:
        stop(server)
        console.print(f"[red]the temporary Prefect server did not start:[/red] {exc}")
        console.print(
            f"Start one that lmloop commands share instead: `{runnable('lmloop')} ui` in another terminal (its Prefect server is "
            "used automatically), or a team server and export PREFECT_API_URL=http://HOST:4200/api. "
            f"The server's log: {home.path / '.prefect' / 'server.log'}"
        )
        raise typer.Exit(1) from exc
    os.environ["PREFECT_API_URL"] = url
    os.environ["PREFECT_UI_URL"] = ""  # this server stops with the command: no "View at" link that dies with it
    # Stopped at interpreter exit, after Prefect has drained its log and event queues into it (a server
    # stopped earlier leaves those workers retrying a dead address); the guard covers every other ending.
    atexit.register(lambda: (stop(server, timeout=6), record.unlink(missing_ok=True)))
    atexit.register(  # printed first: the flow runs stay in this home's Prefect database
        lambda: console.print(
            f"[dim]Prefect flow runs: {runnable('lmloop')} ui shows them (Runs), with their logs and artifacts[/dim]",
            soft_wrap=True,
        )
    )
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
        yield


def _wait_saying(url: str, server: object, timeout: float = 180.0, every: float = 10.0) -> None:
    """Wait for the server, saying so every ``every`` seconds (a slow start is not a hang)."""
    from lmloop.ops.servers import wait_http

    waited = 0.0
    while True:
        try:
            wait_http(url, min(every, timeout - waited), server)  # type: ignore[arg-type]
            return
        except TimeoutError:
            waited += every
            if waited >= timeout:
                raise
            console.print(f"[dim]…the Prefect server is still starting ({waited:.0f} s)[/dim]")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
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


def run_flow(call: Callable[[], T], as_json: bool) -> T:
    """Run a flow; rejected data or a failed flow prints why, emits the JSON contract and exits 1 (2 for a
    user's mistake, 130 when interrupted)."""
    quiet_prefect_tracebacks()
    try:
        with sigterm_as_interrupt(), prefect_api():
            return run_flow_on_api(call, as_json)
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]interrupted[/yellow] ({exc or 'Ctrl-C'}); the MLflow run is marked KILLED.")
        console.print(f"Resume where it stopped with the same command: {same_command()}", soft_wrap=True, markup=False)
        if as_json:
            emit_json({"status": "interrupted", "error": str(exc), "model_version": None})
        raise typer.Exit(130) from exc


def same_command() -> str:
    import shlex

    args, shown = sys.argv[1:], []
    for i, arg in enumerate(args):  # secret --set values are not printed: the hint says to give them again
        if i and args[i - 1] == "--set" or arg.startswith("--set="):
            prefix = "--set=" if arg.startswith("--set=") else ""
            arg = prefix + settings.redact_assignments([arg.removeprefix("--set=")])[0]
        shown.append(settings.redact(arg))
    return shlex.join([runnable("lmloop"), *shown])


def run_flow_on_api(call: Callable[[], T], as_json: bool) -> T:
    from mlflow.exceptions import MlflowException

    from lmloop.data.gate import DataValidationError

    try:
        return call()
    except UserError as exc:
        if as_json:
            emit_json({"status": "error", "error": str(exc), "model_version": None})
        raise user_error(exc) from exc
    except DataValidationError as exc:
        console.print("[red]data rejected[/red] —", end=" ")
        console.print(exc.details, soft_wrap=True, markup=False, highlight=False)  # paths whole, never markup
        if exc.listing:
            console.print(f"the list: {exc.listing}", soft_wrap=True, markup=False, highlight=False)
        if as_json:
            emit_json({"status": "rejected", "validation": {**exc.report, "success": False}, "model_version": None})
        raise typer.Exit(1) from exc
    except MlflowException as exc:  # the tracking server is down, or refused a request (after bounded retries)
        message = settings.redact(f"MLflow at {settings.tracking_uri()} failed: {exc.message[:2000]}")
        console.print(f"[red]failed:[/red] {message}")
        if exc.error_code == "INVALID_PARAMETER_VALUE":  # a refusal, not an outage: a rerun fails the same way
            console.print("Nothing was promoted. MLflow refused a value lmloop sent: please report it as a bug.")
        else:
            console.print("Nothing was promoted; re-run the same command to resume once MLflow is back.")
        if as_json:
            emit_json({"status": "failed", "error": message, "model_version": None})
        raise typer.Exit(1) from exc
    except (ValueError, RuntimeError, OSError) as exc:  # a failed stage (a bug shows its traceback above)
        console.print(f"[red]failed:[/red] {exc}")
        if as_json:
            emit_json({"status": "failed", "error": str(exc), "model_version": None})
        raise typer.Exit(1) from exc
