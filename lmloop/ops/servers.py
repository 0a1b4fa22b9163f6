"""Starting the MLflow UI and the Prefect server as child processes (``lmloop ui``), loopback by default."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def runnable(program: str) -> str:
    """How to type ``program``, an entry point of this environment (``lmloop``, ``mlflow``), so that it works
    as printed from the folder the command ran in: its bare name when the shell finds this environment's copy
    (an activated venv), else its path, relative when it lies below the working folder (``.venv/bin/lmloop``)."""
    path = BIN / program
    found = shutil.which(program)
    if found and os.path.exists(path) and os.path.samefile(found, path):
        return program
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = getattr(process, "log_path", None)
            tail = "".join(Path(log).read_text(errors="replace").splitlines(True)[-15:]) if log else ""
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def mlflow_ui_command(host: str, port: int, *, tracking_uri: str, artifact_root: str) -> list[str]:
    """``mlflow ui`` on lmloop's tracking store. MLflow's server job runner (Huey consumers for GenAI
    scorers, which lmloop never submits: about eight processes polling the store) is off unless the user
    turned it on with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``."""
    jobs = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return [
        "env",
        f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION={jobs}",
        str(BIN / "mlflow"),
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--default-artifact-root",
        artifact_root,
        "--host",
        host,
        "--port",
        str(port),
    ]


def prefect_server_command(host: str, port: int) -> list[str]:
    """``prefect server start`` on ``host:port`` whose UI calls the API on that same port: Prefect's UI
    settings otherwise answer the default port's API (4200), and a UI on any other port shows nothing.
    A ``PREFECT_UI_API_URL`` the user set (a proxy, a public name) wins."""
    api = os.environ.get("PREFECT_UI_API_URL") or f"http://{host}:{port}/api"
    settings_env = [f"PREFECT_UI_API_URL={api}", f"PREFECT_SERVER_API_PORT={port}", f"PREFECT_SERVER_API_HOST={host}"]
    return ["env", *settings_env, str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)]


def ui_record(home: Path) -> Path:
    """Where a running ``lmloop ui`` tells other lmloop commands of this home about its Prefect API."""
    return home / ".prefect" / "lmloop-ui.json"


def running_prefect_api(home: Path) -> str | None:
    """The API of a Prefect server ``lmloop ui`` runs for this home, if one answers now."""
    try:
        record = json.loads(ui_record(home).read_text())
        os.kill(int(record["pid"]), 0)
        with urllib.request.urlopen(f"{record['api_url']}/health", timeout=2) as response:
            return record["api_url"] if response.status == 200 else None
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a server answers at ``url`` now (any HTTP status: it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def guarded(command: list[str]) -> list[str]:
    """``command`` under :mod:`lmloop.ops.guard`: it dies with the process that starts it, even on kill -9."""
    return [sys.executable, "-m", "lmloop.ops.guard", *command]


def start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A server in its own session (so :func:`stop` can reach its workers), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the child keeps its own handle
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    process.log_path = log  # type: ignore[attr-defined]  (for wait_http's error)
    return process


def stop(process: subprocess.Popen, timeout: float = 20.0, crash: bool = False) -> None:
    """SIGTERM the child's whole process group (servers fork workers), SIGKILL if it lingers;
    ``crash``: SIGKILL at once, as a machine or OOM-killer would."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def run_ui(
    host: str,
    *,
    mlflow_port: int,
    prefect_port: int | None,
    console: Any,
    home: Path,
    tracking_uri: str,
    artifact_root: str,
) -> int:
    """Start both (their logs in ``home/logs``), print the URLs, wait for Ctrl-C (or SIGTERM), stop both.
    While it runs, lmloop commands of this ``home`` report to its Prefect server. Returns the exit code."""
    logs = home / "logs"
    children: list[tuple[str, subprocess.Popen, str]] = []
    stopping = False

    def _terminate(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C stops both however this process was started: a process started with SIGINT ignored (a background
    # job of a non-interactive shell, some test runners and service managers) or blocked inherits that, and
    # Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        mlflow_url = f"http://{host}:{mlflow_port}"
        children.append(
            (
                "MLflow UI",
                start(
                    mlflow_ui_command(host, mlflow_port, tracking_uri=tracking_uri, artifact_root=artifact_root),
                    logs / "mlflow-ui.log",
                ),
                mlflow_url,
            )
        )
        if prefect_port is not None:
            prefect_url = f"http://{host}:{prefect_port}"
            server = start(prefect_server_command(host, prefect_port), logs / "prefect-server.log")
            children.append(("Prefect UI", server, prefect_url))
        # a fresh Prefect home migrates its database first: minutes on a busy 2-core machine
        wait_http(f"{mlflow_url}/health", 300, process=children[0][1])
        if prefect_port is not None:
            wait_http(f"{children[1][2]}/api/health", 300, process=children[1][1])
        for label, _, url in children:
            console.print(f"{label}: [bold]{url}[/bold]")
        if prefect_port is not None:
            api = f"{children[1][2]}/api"
            ui_record(home).write_text(json.dumps({"pid": os.getpid(), "api_url": api}))
            console.print(
                f"  lmloop commands of this LMLOOP_HOME report there; other tools: export PREFECT_API_URL={api}"
            )
        console.print(f"logs in {logs}; Ctrl-C stops both")
        sys.stdout.flush()
        while not stopping and all(p.poll() is None for _, p, _ in children):
            time.sleep(0.5)
        dead = [label for label, p, _ in children if p.poll() is not None]
        if dead and not stopping:
            console.print(f"[red]{', '.join(dead)} stopped; see {logs}[/red]")
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[red]ui failed:[/red] {exc} (see {logs})")
        return 1
    finally:
        ui_record(home).unlink(missing_ok=True)
        for _, process, _ in children:
            stop(process, timeout=10)
