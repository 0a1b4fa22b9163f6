"""A stop request ends ``lmloop`` within 10 s with a checkpoint saved, and its temporary Prefect server
dies with it whatever ends the command (SIGTERM, kill -9): nothing is left running."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES

pytestmark = pytest.mark.slow


def _server_processes(port: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "server start" in cmdline and f"--port {port}" in cmdline:
                found.append(int(entry.name))
    return found


def _start_training(home: Path, corpus: Path, log: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "LMLOOP_HOME": str(home)}
    for key in ("PREFECT_API_URL", "PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)  # no server given: the command starts its own
    sets = [*TINY_OVERRIDES, "train.max_steps=100000", "train.log_every=5"]
    command = [sys.executable, "-m", "cli", "run", "--data", str(corpus), *[a for s in sets for a in ("--set", s)]]
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while "step 10/" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    url = json.loads((home / ".prefect" / "lmloop-server.json").read_text())["url"]
    return process, int(url.split(":")[2].split("/")[0])


def _gone(pids_of: object, port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pids_of(port):
            return True
        time.sleep(0.25)
    return False


def _run_statuses(home: Path) -> list[str]:
    with sqlite3.connect(home / "mlruns" / "mlflow.db") as db:
        return [status for (status,) in db.execute("select status from runs")]


def test_ctrl_c_stops_within_ten_seconds_killed_with_a_checkpoint_and_no_server_left(
    tmp_path: Path, corpus: Path
) -> None:
    process, port = _start_training(tmp_path / "home", corpus, tmp_path / "out.log")
    assert _server_processes(port), "a temporary server of the command's own"
    start = time.monotonic()
    process.send_signal(signal.SIGINT)  # Ctrl-C
    process.wait(timeout=30)
    out = (tmp_path / "out.log").read_text()
    assert time.monotonic() - start < 10, out[-2000:]
    assert process.returncode == 130, out[-2000:]
    hint = re.search(r"Resume where it stopped with the same command: (\S*lmloop) run (.*)", out)
    assert hint and Path(hint.group(1)).name == "lmloop", out[-2000:]
    assert "tokenizer.vocab_size=***" not in hint.group(2), "only secrets are hidden in the hint"
    assert list((tmp_path / "home" / "work").glob("*/checkpoints/step-*")), "a checkpoint at the stop"
    assert _run_statuses(tmp_path / "home") == ["KILLED"], "not RUNNING forever"
    assert _gone(_server_processes, port, 2)


def test_kill_9_leaves_no_orphaned_server(tmp_path: Path, corpus: Path) -> None:
    process, port = _start_training(tmp_path / "home", corpus, tmp_path / "out.log")
    process.kill()
    process.wait()
    assert _gone(_server_processes, port, 10), "the server died with the command"


def test_sigterm_while_ingesting_many_small_files_stops_within_ten_seconds(tmp_path: Path, prefect_api: str) -> None:
    files = tmp_path / "notes"
    files.mkdir()
    for i in range(4000):
        (files / f"note-{i:05d}.txt").write_text(f"One sentence, number {i}, about the weather.\n")
    env = {**os.environ, "LMLOOP_HOME": str(tmp_path / "home"), "LMLOOP_PROGRESS_INTERVAL": "1"}
    env["PREFECT_API_URL"] = prefect_api
    for key in ("PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)
    log = tmp_path / "out.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--data", str(files)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    while "ingest: " not in log.read_text():  # the progress line: many small files are never silent
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    out = log.read_text()
    assert time.monotonic() - start < 10, out[-2000:]
    assert "4000/4000 files" not in out, "it stopped, rather than finishing the ingest first"
    assert process.returncode == 130 and "Resume where it stopped with the same command" in out, out[-2000:]
    assert _run_statuses(tmp_path / "home") == ["KILLED"]


def test_sigterm_where_no_stop_request_listens_still_ends_the_run_killed(
    tmp_path: Path, corpus: Path, prefect_api: str
) -> None:
    """Between stages Prefect's own handler takes SIGTERM (here: right after the MLflow run is opened, a test
    hook sending it, no timing). The run still ends KILLED with the resume hint and exit 130, not with the
    process killed and the MLflow run left RUNNING."""
    env = {**os.environ, "LMLOOP_HOME": str(tmp_path / "home"), "PREFECT_API_URL": prefect_api}
    env |= {"LMLOOP_CRASH_AT": "run-started", "LMLOOP_CRASH_SIGNAL": "SIGTERM"}
    for key in ("PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)
    sets = [a for s in TINY_OVERRIDES for a in ("--set", s)]
    command = [sys.executable, "-m", "cli", "run", "--data", str(corpus), *sets]
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    out = process.stdout + process.stderr
    assert process.returncode == 130 and "interrupted (SIGTERM)" in out, out[-2000:]
    assert "Resume where it stopped with the same command" in out and "ingest: " not in out, out[-2000:]
    assert _run_statuses(tmp_path / "home") == ["KILLED"]
