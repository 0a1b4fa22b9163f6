"""The server commands lmloop starts for its users."""

from itertools import takewhile

import pytest

from lmloop.servers import mlflow_ui_command


def _env_of(command: list[str]) -> dict[str, str]:
    assert command[0] == "env"
    return dict(arg.split("=", 1) for arg in takewhile(lambda arg: "=" in arg, command[1:]))


def test_the_mlflow_ui_starts_without_mlflows_job_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    command = mlflow_ui_command("127.0.0.1", 5000)
    assert _env_of(command)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert command[command.index("--port") + 1] == "5000" and command[command.index("--host") + 1] == "127.0.0.1"


def test_a_user_who_wants_mlflow_jobs_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert _env_of(mlflow_ui_command("127.0.0.1", 5000))["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
