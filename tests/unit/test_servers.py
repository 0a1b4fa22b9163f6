"""The server commands lmloop starts for its users."""

import os
import subprocess
from itertools import takewhile
from pathlib import Path

import pytest

from lmloop.core import settings
from lmloop.ops.servers import BIN, mlflow_ui_command, runnable


def _env_of(command: list[str]) -> dict[str, str]:
    assert command[0] == "env"
    return dict(arg.split("=", 1) for arg in takewhile(lambda arg: "=" in arg, command[1:]))


def test_the_mlflow_ui_starts_without_mlflows_job_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    command = mlflow_ui_command(
        "127.0.0.1", 5000, tracking_uri=settings.tracking_uri(), artifact_root=settings.artifact_root()
    )
    assert _env_of(command)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert command[command.index("--port") + 1] == "5000" and command[command.index("--host") + 1] == "127.0.0.1"


def test_a_user_who_wants_mlflow_jobs_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert (
        _env_of(
            mlflow_ui_command(
                "127.0.0.1", 5000, tracking_uri=settings.tracking_uri(), artifact_root=settings.artifact_root()
            )
        )["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]
        == "true"
    )


def test_a_printed_command_works_as_printed_from_a_plain_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No venv activated (its bin not on PATH): the hint names the program by its path, which a shell runs."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    for cwd in (BIN.parent.parent, tmp_path):  # below the project (relative path) and elsewhere (absolute)
        monkeypatch.chdir(cwd)
        typed = runnable("lmloop")
        assert typed != "lmloop" and "/" in typed
        proc = subprocess.run(f"{typed} --help", shell=True, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (typed, proc.stderr[-500:])
        assert (Path(runnable("mlflow")) if cwd == tmp_path else cwd / runnable("mlflow")).exists()


def test_an_activated_environment_gets_the_bare_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}/usr/bin:/bin")
    assert runnable("lmloop") == "lmloop"
