"""The disk fills up while artifacts are written: the MLflow artifact store is a 3 MB tmpfs, enough for
the run's config, reports and plots but not for the model. The flow fails with a clear error, nothing
is registered, and every artifact written before is intact; with space again, the same command resumes
the same run and registers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES, store_client

pytestmark = pytest.mark.slow
NAME = "full-lm"


def _mount_tmpfs(path: Path, size: str) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a size-limited tmpfs needs root"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return None if proc.returncode == 0 else f"mount -t tmpfs failed: {proc.stderr.decode().strip()}"


def test_disk_full_while_writing_artifacts(corpus: Path, tmp_path: Path, prefect_api: str) -> None:
    home = tmp_path / "home"
    artifacts = home / "mlruns" / "artifacts"
    why = _mount_tmpfs(artifacts, "3m")
    if why:
        pytest.skip(f"disk-full check skipped: {why}")
    env = {**os.environ, "LMLOOP_HOME": str(home), "PREFECT_HOME": str(tmp_path / "prefect")}
    for key in MLFLOW_URIS:
        env.pop(key, None)
    env["PREFECT_API_URL"] = prefect_api  # the session's Prefect server
    # a 256-wide model: ~7 MB of weights, more than the artifact store holds
    sets = [*TINY_OVERRIDES, "model.n_embd=256", "model.n_head=4", "train.max_steps=20", f"registry.model_name={NAME}"]
    command = [sys.executable, "-m", "cli", "run", "--data", str(corpus), "--run-name", "full"]
    command += [a for s in sets for a in ("--set", s)] + ["--json"]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 1, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["status"] == "failed" and "No space left on device" in out["error"], out

        client = store_client(home)
        assert client.search_model_versions(f"name='{NAME}'") == [], "nothing registered"
        (run,) = client.search_runs([client.get_experiment_by_name("lmloop").experiment_id])
        assert run.info.status == "FAILED"
        earlier = {
            "config.json": json.loads(Path(client.download_artifacts(run.info.run_id, "config.json")).read_text()),
            "manifest": json.loads(Path(client.download_artifacts(run.info.run_id, "data/manifest.json")).read_text()),
        }
        assert earlier["config.json"]["model"]["n_embd"] == 256 and earlier["manifest"]["files"]
        curves = Path(client.download_artifacts(run.info.run_id, "plots/training_curves.png")).read_bytes()
        assert curves[:4] == b"\x89PNG" and curves.endswith(b"IEND\xaeB`\x82"), "a complete PNG"

        # space again (the same tmpfs, grown): the same command resumes the run and registers
        subprocess.run(["mount", "-o", "remount,size=64m", str(artifacts)], check=True)
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        done = json.loads(rerun.stdout.strip().splitlines()[-1])
        assert done["run_id"] == run.info.run_id and done["aliases"] == ["champion"]
        again = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json")).read_text())
        assert again == earlier["config.json"], "the earlier artifacts survived"
    finally:
        subprocess.run(["umount", "-l", str(artifacts)], check=False)
