"""What the MLflow UI that ``lmloop ui`` starts costs the machine, with MLflow's server job runner (its Huey
workers, for GenAI scorers lmloop never submits) off, as lmloop starts it, and on, MLflow's default.

    python benchmarks/mlflow_ui_cost.py [--seconds 60] [--json]

For each: seconds until /health answers, processes, CPU seconds they used and their resident memory once
``--seconds`` have passed since the answer; one JSON line with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmloop.core import settings  # noqa: E402
from lmloop.ops.servers import free_port, mlflow_ui_command, start, stop, wait_http  # noqa: E402


def measure(jobs: str, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-cost-") as home:
        os.environ["LMLOOP_HOME"] = home  # a fresh sqlite store under it
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = jobs  # mlflow_ui_command passes the user's value on
        port = free_port()
        began = time.perf_counter()
        server = start(
            mlflow_ui_command(
                "127.0.0.1", port, tracking_uri=settings.tracking_uri(), artifact_root=settings.artifact_root()
            ),
            Path(home) / "mlflow-ui.log",
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 300, server)
            up = time.perf_counter() - began
            time.sleep(seconds)
            root = psutil.Process(server.pid)
            procs = [root, *root.children(recursive=True)]
            cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
            rss = sum(p.memory_info().rss for p in procs) / 2**20
        finally:
            stop(server)
    return {"health_s": round(up, 1), "processes": len(procs), "cpu_s": round(cpu, 1), "rss_mib": round(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"jobs_off": measure("false", args.seconds), "jobs_on": measure("true", args.seconds)}
    for name, r in results.items():
        print(
            f"{name:8s} health after {r['health_s']:5.1f} s  {r['processes']:3d} processes  "
            f"{r['cpu_s']:6.1f} CPU-s  {r['rss_mib']:6d} MiB"
        )
    off, on = results["jobs_off"], results["jobs_on"]
    print(f"on / off: CPU {on['cpu_s'] / off['cpu_s']:.2f}x, memory {on['rss_mib'] / off['rss_mib']:.2f}x")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
