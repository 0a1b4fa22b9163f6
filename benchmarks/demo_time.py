"""How long `make demo` takes after installation, and the longest it stays silent.

Runs the README's demo in a fresh LMLOOP_HOME (the environment must exist: run `make demo` once first),
timestamps every line it prints, and reports the total, each command's share and the longest gap between
two printed lines. The issue's targets: under 5 minutes on 2 cores, a line at least every 15 s.

    .venv/bin/python benchmarks/demo_time.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line with every figure")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lmloop-demo-"))
    env = {**os.environ, "LMLOOP_HOME": str(home)}
    start = last = time.monotonic()
    gap, gap_before, steps = 0.0, "", []
    proc = subprocess.Popen(
        ["make", "demo", f"LMLOOP_HOME={home}"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.monotonic()
        if now - last > gap:
            gap, gap_before = now - last, line.strip()[:120]
        last = now
        if line.split(" ", 1)[0].endswith("bin/lmloop"):  # make's echo of a command
            steps.append({"command": line.strip().split("lmloop ", 1)[1][:60], "started_s": round(now - start, 1)})
    proc.wait()
    total = time.monotonic() - start
    figures = {
        "total_s": round(total, 1),
        "target_s": 300,
        "longest_silence_s": round(gap, 1),
        "silence_target_s": 15,
        "silent_before": gap_before,
        "steps": steps,
        "cores": os.cpu_count(),
        "returncode": proc.returncode,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"make demo: {total:.0f} s (target 300), longest silence {gap:.1f} s before: {gap_before}")


if __name__ == "__main__":
    main()
