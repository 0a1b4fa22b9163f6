"""Operator commands as a user runs them, against the session's trained champion: status, generate,
config show, --help everywhere, and ``lmloop ui`` starting (and stopping) both servers."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.ops.servers import free_port
from tests.conftest import MLFLOW_URIS, store_client

pytestmark = pytest.mark.slow
LMLOOP = [sys.executable, "-m", "cli"]


def lmloop(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LMLOOP, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _non_loopback_ip() -> str | None:
    """This machine's address on its network (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


def test_status_shows_aliases_metrics_and_runs(trained: dict, tiny_config: PipelineConfig) -> None:
    out = last_json(lmloop("status", "--json"))
    assert out["model_name"] == tiny_config.registry.model_name
    assert out["tracking_uri"] == settings.tracking_uri()
    champion = out["aliases"]["champion"]
    assert champion["version"] == trained["model_version"]
    assert champion["metrics"]["test_bits_per_byte"] == pytest.approx(trained["metrics"]["test_bits_per_byte"])
    assert champion["run_id"] == trained["run_id"]
    # "Last runs" are the store's newest, whichever tests of this process made them before this one
    client = store_client(trained["tracking_uri"])
    experiment = client.get_experiment_by_name(tiny_config.registry.experiment).experiment_id
    newest = client.search_runs([experiment], order_by=["attribute.start_time DESC"], max_results=5)
    assert [r["run_id"] for r in out["runs"]] == [r.info.run_id for r in newest]


def test_generate_continues_a_prompt_with_the_champion(trained: dict) -> None:
    proc = lmloop("generate", "--prompt", "Tire stezoubi", "--max-new-tokens", "12", "--json")
    out = last_json(proc)
    assert out["model_version"] == trained["model_version"]
    assert out["samples"][0]["prompt"] == "Tire stezoubi" and out["samples"][0]["completion"].strip()
    assert proc.stdout.startswith("Tire stezoubi")
    missing = lmloop("generate", "--prompt", "x", "--alias", "nonexistent")
    assert missing.returncode == 2 and "alias 'nonexistent'" in missing.stderr
    assert "Traceback" not in missing.stderr and "<|endoftext|>" not in proc.stdout


def test_config_show_applies_yaml_then_environment_then_set(tmp_path: Path) -> None:
    env = {"LMLOOP_TRAIN__MAX_STEPS": "7", "LMLOOP_TRAIN__BATCH_SIZE": "5"}
    out = last_json(lmloop("config", "show", "--set", "train.batch_size=3", "--json", env=env))
    assert out["train"]["max_steps"] == 7, "environment over the preset"
    assert out["train"]["batch_size"] == 3, "--set over the environment"
    bad = lmloop("config", "show", env={"LMLOOP_TRAIN__MAX_STEPS": "many"})
    assert bad.returncode == 2 and "train.max_steps" in bad.stderr


def test_help_everywhere() -> None:
    commands = ["run", "finetune", "continual", "deploy", "rollback", "sample-data", "status", "generate", "ui"]
    for command in [*commands, "config show"]:
        proc = lmloop(*command.split(), "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout and "--help" in proc.stdout, command


def _descendant_commands(pid: int) -> list[str]:
    """Command lines of every process below ``pid``."""
    import psutil

    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            out.append(" ".join(child.cmdline()))
        except psutil.Error:
            continue
    return out


def test_ui_starts_mlflow_and_prefect_on_loopback_and_stops_on_ctrl_c(trained: dict, tmp_path: Path) -> None:
    mlflow_port, prefect_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    for key in MLFLOW_URIS:  # MLflow exports the last URIs this process used: the home's store, please
        env.pop(key, None)
    ui = subprocess.Popen(
        [*LMLOOP, "ui", "--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # started as a background job of a script is, with SIGINT ignored: Ctrl-C must stop it all the same
        # (before: it inherited the ignore and hung; CI's workers hit it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        lines = []
        for line in ui.stderr:
            lines.append(line)
            if "Ctrl-C" in line or len(lines) > 200:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{mlflow_port}" in text and f"http://127.0.0.1:{prefect_port}" in text, text
        name = trained["model_name"]
        api = f"http://127.0.0.1:{mlflow_port}/ajax-api/2.0/mlflow/registered-models/get?name={name}"
        model = json.loads(urllib.request.urlopen(api, timeout=10).read())["registered_model"]
        assert {"alias": "champion", "version": trained["model_version"]} in model["aliases"]
        assert urllib.request.urlopen(f"http://127.0.0.1:{prefect_port}/api/health", timeout=10).status == 200
        commands = _descendant_commands(ui.pid)
        assert any("mlflow" in c for c in commands), commands
        assert not [c for c in commands if "huey" in c], "MLflow's job runner started: lmloop submits no server jobs"
        lan = _non_loopback_ip()
        for port in (mlflow_port, prefect_port) if lan else ():
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((lan, port)) != 0, f"port {port} answers on {lan}: not loopback-only"
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        code = ui.wait(60)
    assert code == 0
    for port in (mlflow_port, prefect_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after Ctrl-C"
