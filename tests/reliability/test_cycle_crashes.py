"""kill -9 at each step boundary of a continual cycle (a test hook names the point, no timing), then the
same command again: the cycle completes exactly once — one decision applied, the batch consumed once,
aliases and gate history consistent — and leaves the state folder and the registry exactly as one
uninterrupted cycle on the same batch, from the same home, leaves them."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lmloop.data.sample_data import write_corpus
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES, mlflow_store

pytestmark = pytest.mark.slow
NAME = "crash-lm"
SETS = [*TINY_OVERRIDES, f"registry.model_name={NAME}", "finetune.max_steps=10", "finetune.log_every=5"]
SETS += ["finetune.batch_size=8", "eval.samples=0", "eval.max_documents=150", "continual.bootstrap_samples=200"]
SETS += ["continual.tolerance=0.5", "continual.margin=-1.0"]  # any sane challenger is promoted: moves to check
POINTS = ["judged", "promotion-moved", "promotion-recorded", "cycle-recorded"]


def _lmloop(args: list[str], home: Path, api: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LMLOOP_HOME": str(home), "PREFECT_API_URL": api}
    for key in ("LMLOOP_CRASH_AT", *MLFLOW_URIS):  # MLflow exports the last URIs this process used
        env.pop(key, None)
    if crash_at:
        env["LMLOOP_CRASH_AT"] = crash_at
    sets = [a for s in SETS for a in ("--set", s)]
    command = [sys.executable, "-m", "cli", *args, *sets, "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def base(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a champion, and the batch every cycle below takes (a landing folder outside the homes)."""
    root = tmp_path_factory.mktemp("crash-base")
    write_corpus(root / "a", seed=0, docs=600, files=2)
    write_corpus(root / "landing", seed=30, shift=True, docs=200, files=1)
    proc = _lmloop(["run", "--data", str(root / "a")], root / "home", prefect_api)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _copy(base: Path, name: str) -> Path:
    """A twin of the base home (its state and store refer to the base's corpora and artifacts, read only)."""
    home = base / name
    shutil.copytree(base / "home", home, symlinks=True)
    return home


@pytest.fixture(scope="module")
def uninterrupted(base: Path, prefect_api: str) -> dict:
    """What one uninterrupted cycle on the batch leaves: the state folder and the registry, run ids and times
    left out (see :func:`_snapshot`)."""
    home = _copy(base, "uninterrupted")
    proc = _lmloop(["continual", "--incoming", str(base / "landing")], home, prefect_api)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _snapshot(home)


def _varies(tag: str) -> bool:
    """Tags that differ between two equal cycles: ids, times and speeds, and the config's hash (it covers the
    frozen slices' paths, which name each twin home; a rerun in one home has the same)."""
    timing = any(word in tag for word in ("per_second", "seconds", "mfu"))
    return timing or tag == "config_hash" or tag.startswith(("run_id", "mlflow.", "lmloop.registration"))


def _snapshot(home: Path) -> dict:
    """The state folder (trained ids, replay corpora, frozen slices, watermark, cycle journal) and the registry
    (versions, aliases, gate events) of ``home``, with what differs between two equal cycles taken out: run
    ids (and the batch names made of them), times, and the home's own path."""
    import numpy as np

    from lmloop.data.state import State

    state = State(home / "state")
    (journal_file,) = state.cycle_files()
    batch = journal_file.stem

    def plain(value: object) -> object:
        text = json.dumps(value, sort_keys=True).replace(batch, "<batch>").replace(str(home), "<home>")
        return json.loads(re.sub(r"[0-9a-f]{32}", "<run>", text))

    journal = json.loads(journal_file.read_text())
    with mlflow_store(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"):
        from lmloop.registry import model_registry, tracking

        versions = {
            v.version: {k: w for k, w in v.tags.items() if not _varies(k)}
            for v in tracking.client().search_model_versions(f"name='{NAME}'")
        }
        aliases = model_registry.model_aliases(NAME)
    events = [{k: v for k, v in e.items() if k != "time"} for e in state.history()]
    return {
        "trained_ids": np.sort(state.trained_ids()).tolist(),
        "replay_corpora": len(state.corpora()),
        "frozen_slices": sorted(json.dumps(plain(rows), sort_keys=True) for rows in state.slice_rows().values()),
        "watermark": {sha: entry["uri"] for sha, entry in state.watermark().items()},
        "journal": plain({k: journal[k] for k in ("parent", "decision", "outcome", "closed")}),
        "versions": plain(versions),
        "aliases": aliases,
        "gate_events": plain(events),
    }


def _state(home: Path) -> dict:
    state = home / "state"
    return {
        "watermark": json.loads((state / "watermark.json").read_text()),
        "history": [json.loads(line) for line in (state / "gate_history.jsonl").open()],
    }


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_a_step_boundary_then_a_rerun_completes_the_cycle_once(
    base: Path, uninterrupted: dict, prefect_api: str, point: str
) -> None:
    from lmloop.registry import model_registry, tracking

    home, landing = _copy(base, f"killed-at-{point}"), base / "landing"
    killed = _lmloop(["continual", "--incoming", str(landing)], home, prefect_api, crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rerun = _lmloop(["continual", "--incoming", str(landing)], home, prefect_api)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    out = json.loads(rerun.stdout.strip().splitlines()[-1])
    state = _state(home)
    consumed = [v for v in state["watermark"].values() if v["uri"].startswith(str(landing))]
    assert len(consumed) == 1, "consumed once"
    batch = consumed[0]["batch"]
    if point == "cycle-recorded":  # only the close was left: the rerun finished it, nothing else to do
        assert out["new_files"] == [] and out["promoted"] is None
    else:
        assert out["new_files"] and batch == f"batch-{out['run_id'][:8]}", "the rerun resumed the same cycle"
    with mlflow_store(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"):
        versions = tracking.client().search_model_versions(f"name='{NAME}'")
        mine = [v for v in versions if v.tags.get("continual_batch") == batch]
        assert len(mine) == 1, "registered once"
        challenger = str(mine[0].version)
        champion = model_registry.alias_version(NAME, "champion")
    gates = [e for e in state["history"] if e.get("event") == "gate" and e["challenger"] == challenger]
    assert len(gates) == 1, "one decision, applied once"
    promoted = [e for e in state["history"] if e.get("event") in ("gate", "first_champion") and e["promoted"]]
    last = promoted[-1].get("challenger") or promoted[-1].get("champion")
    assert champion == last, "the champion is the last promotion the history records"
    journal = json.loads((home / "state" / "cycles" / f"{batch}.json").read_text())
    assert journal["closed"] is True and journal["decision"]["batch"] == batch
    assert journal["outcome"]["promoted"] == gates[0]["promoted"]
    # and everything equals what an uninterrupted cycle on the same batch left, field by field (before: only
    # the invariants above)
    mine = _snapshot(home)
    for field, expected in uninterrupted.items():
        assert mine[field] == expected, f"{field} differs from the uninterrupted cycle's"
