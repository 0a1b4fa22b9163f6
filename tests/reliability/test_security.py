"""Security: no pickle deserialisation anywhere, never remote code, secrets never stored, loopback servers,
Prefect results as JSON."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from subprocess import PIPE

import pytest

from lmloop.core import settings
from lmloop.ops.servers import free_port, stop
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES, store_client
from tests.reliability.test_tracking_down import _server

pytestmark = pytest.mark.slow
CODE = ["lmloop", "flows", "tasks", "data_checks", "cli", "benchmarks"]
FORBIDDEN = {
    r"\bimport\s+(pickle|cloudpickle|dill|joblib|shelve|marshal)\b": "a pickle-family module",
    r"\bfrom\s+(pickle|cloudpickle|dill|joblib|shelve|marshal)\b": "a pickle-family module",
    r"\bpickle\.loads?\(": "pickle deserialisation",
    r"\btorch\.load\(": "torch.load (pickle underneath): checkpoints are safetensors + JSON",
    r"\btorch\.save\(": "torch.save writes a pickle",
    r"allow_pickle\s*=\s*True": "NumPy pickle loading",
    r"read_pickle\(": "pandas pickle loading",
    r"trust_remote_code\s*=\s*True": "remote code execution from a model folder",
}
PICKLE_MAGIC = re.compile(rb"\A\x80[\x02-\x05]")


def _violations(text: str) -> list[str]:
    return [why for pattern, why in FORBIDDEN.items() if re.search(pattern, text)]


def test_the_scanner_catches_what_it_looks_for() -> None:
    assert _violations("state = pickle.loads(blob)") == ["pickle deserialisation"]
    assert _violations("AutoModel.from_pretrained(p, trust_remote_code=True)")
    assert _violations("torch.load(path, weights_only=True)")
    assert not _violations("from safetensors.torch import load_file")


def test_no_pickle_and_no_remote_code_in_the_code() -> None:
    found = []
    for folder in CODE:
        for path in (settings.PROJECT_ROOT / folder).rglob("*.py"):
            for why in _violations(path.read_text(encoding="utf-8")):
                found.append(f"{path.relative_to(settings.PROJECT_ROOT)}: {why}")
    assert found == []


def test_mlflow_refuses_pickle_deserialisation() -> None:
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert settings._ENV_DEFAULTS["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"


def _is_pickle(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4)
    if PICKLE_MAGIC.match(head) or path.suffix in {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib"}:
        return True
    if head.startswith(b"PK") and zipfile.is_zipfile(path):  # torch.save's zip format holds data.pkl
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(".pkl") for n in z.namelist())
    return False


def test_nothing_lmloop_wrote_is_a_pickle_and_prefect_results_are_json(trained: dict, lmloop_home: Path) -> None:
    files = [p for p in lmloop_home.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "model.safetensors" for p in files) and any(p.name == "COMPLETE.json" for p in files)
    assert [str(p) for p in files if _is_pickle(p)] == []
    results = list((lmloop_home / ".prefect" / "storage").iterdir())
    assert results, "the flows persist their results"
    for path in results:
        record = json.loads(path.read_text())  # every persisted result is JSON...
        if "metadata" in record:  # ...and a result record names its serializer: json, never pickle
            assert record["metadata"]["serializer"]["type"] == "json", path


def test_a_canary_secret_never_reaches_mlflow_or_prefect(corpus: Path, tmp_path: Path) -> None:
    """Secrets from every door (a password in the tracking URI, cloud/hub tokens in the environment, a
    ``--set`` storage option) never reach stdout, stderr, the MLflow server's store or Prefect's database."""
    canary = "canary-7f3a9c1e5b"
    home, prefect_home, server_root = tmp_path / "home", tmp_path / "prefect", tmp_path / "mlflow"
    port = free_port()
    server = _server(server_root, port)
    uri = f"http://lmloop:{canary}-url@127.0.0.1:{port}"
    env = {**os.environ, "LMLOOP_HOME": str(home), "PREFECT_HOME": str(prefect_home)}
    for key in (*MLFLOW_URIS, "PREFECT_API_URL"):
        env.pop(key, None)
    env |= dict.fromkeys(MLFLOW_URIS, uri)
    env |= {"AWS_SECRET_ACCESS_KEY": f"{canary}-env", "HF_TOKEN": f"{canary}-hf", "LMLOOP_API_TOKEN": f"{canary}-x"}
    sets = [*TINY_OVERRIDES, f"data.storage_options={{memory: {{token: {canary}-config}}}}", "eval.samples=0"]
    command = [sys.executable, "-m", "cli", "run", "--data", str(corpus), *[a for s in sets for a in ("--set", s)]]
    try:
        proc = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        shown = [proc.stdout, proc.stderr]
        others = [  # at once: each is a fresh interpreter importing lmloop
            subprocess.Popen([sys.executable, "-m", "cli", *extra], env=env, stdout=PIPE, stderr=PIPE, text=True)
            for extra in (["status"], ["status", "--json"], ["config", "show"])
        ]
        for seen in others:
            out, err = seen.communicate(timeout=300)
            assert seen.returncode == 0, err[-3000:]
            shown += [out, err]
        assert not [text for text in shown if canary in text], "printed"
        assert any("lmloop:***@127.0.0.1" in text for text in shown), "the URL is still shown, its password hidden"
        stored = [p for root in (home, prefect_home, server_root) for p in root.rglob("*") if p.is_file()]
        assert any(p.name == "mlflow.db" for p in stored) and any(p.name.startswith("prefect.db") for p in stored)
        leaked = [str(p) for p in stored if canary.encode() in p.read_bytes()]
        assert leaked == [], "the MLflow store (params, tags, artifacts) and Prefect's database and logs hold no secret"
        run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
        params = store_client(f"http://127.0.0.1:{port}").get_run(run_id).data.params
        assert "**********" in params["data.storage_options"]
    finally:
        stop(server)


def test_servers_bind_to_loopback_by_default() -> None:
    from cli.operate import ui

    assert ui.__defaults__[0] == "127.0.0.1"
    help_text = subprocess.run([sys.executable, "-m", "cli", "ui", "--help"], capture_output=True, text=True).stdout
    assert "127.0.0.1" in help_text
    for path in (settings.PROJECT_ROOT / folder for folder in CODE):
        for source in path.rglob("*.py"):
            assert "0.0.0.0" not in source.read_text(), f"{source}: binds every interface"
