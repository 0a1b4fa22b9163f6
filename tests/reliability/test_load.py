"""20 concurrent triggers of the continual deployment against one real Prefect server (the load
driver ``benchmarks/load.py``): no two cycles overlap, the new batch is promoted at most once, the
alias history is consistent, and every triggered run reaches a final state."""

import json
import subprocess
import sys

import pytest

from lmloop.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_twenty_concurrent_continual_triggers() -> None:
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "load.py"), "--triggers", "20", "--docs", "400", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(out))
    assert sum(out["states"].values()) == 20 and out["unfinished"] == 0, out
    assert out["overlapping_runs"] == 0 and out["overlapping_trainings"] == 0, out
    assert out["promotions"] <= 1 and out["alias_history_consistent"], out
    assert out["states"].get("COMPLETED", 0) >= 1 and out["states"].get("FAILED", 0) == 0, out
    assert out["held"] is True
