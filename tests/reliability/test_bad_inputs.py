"""Every bad input from the data issue in one folder beside good data: each bad file is reported with
its reason and quarantined byte for byte (the symlink escaping the root is never read), the raw files
are unchanged, and every good document still trains and is registered — nothing lost."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmloop.data.sample_data import write_corpus
from tests.bad_inputs import EXPECTED, write_bad_inputs
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES

pytestmark = pytest.mark.slow


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_bad_inputs_beside_good_data_nothing_lost(tmp_path: Path, prefect_api: str) -> None:
    data, outside, home = tmp_path / "incoming", tmp_path / "outside", tmp_path / "home"
    frozen = write_bad_inputs(data, outside)
    write_corpus(data, seed=3, docs=600, files=2)  # part-000.jsonl, part-001.jsonl (+ _meta/)
    good = {p.name: sum(1 for _ in p.open()) for p in data.glob("part-*.jsonl")}
    before, before_outside = _digests(data), _digests(outside)

    env = {**os.environ, "LMLOOP_HOME": str(home), "PREFECT_HOME": str(tmp_path / "prefect")}
    for key in MLFLOW_URIS:
        env.pop(key, None)
    env["PREFECT_API_URL"] = prefect_api  # the session's Prefect server
    sets = [*TINY_OVERRIDES, "registry.model_name=mixed", f"data.frozen_eval=[{frozen}]"]
    sets += ["validation.max_failed_file_share=0.9"]  # 11 of 13 files are bad: train on the rest
    command = [sys.executable, "-m", "cli", "run", "--data", str(data), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    rejected = {Path(r["file"]).name: " ".join(r["reasons"]) for r in out["validation"]["rejected_files"]}
    assert set(rejected) == set(EXPECTED), set(rejected) ^ set(EXPECTED)
    for name, words in EXPECTED.items():
        assert words in rejected[name] or words in proc.stderr, (name, rejected[name])

    quarantined = {p.name.split("-", 1)[1]: p for p in (home / "quarantine").rglob("*") if p.is_file()}
    for name in EXPECTED:
        assert f"{name}.reason.json" in quarantined, name
        if name != "escapes_root.txt":
            copy = hashlib.sha256(quarantined[name].read_bytes()).hexdigest()
            assert copy == before[name], f"{name}: the quarantined copy is byte-identical"
    assert "escapes_root.txt" not in quarantined, "a file outside the data roots is never read or copied"

    assert _digests(data) == before and _digests(outside) == before_outside, "raw data unchanged"
    manifest = {
        Path(f["uri"]).name: f
        for f in json.loads((Path(out["work_dir"]) / "data" / "manifest.json").read_text())["files"]
    }
    for name, lines in good.items():
        assert manifest[name]["rows_accepted"] == lines, f"{name}: every good document kept"
    assert out["model_version"] == "1" and out["aliases"] == ["champion"]
