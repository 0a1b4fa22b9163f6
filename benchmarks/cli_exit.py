"""What an ``lmloop`` command's exit costs once its work is done, with the heap frozen at exit (as the CLI
and the flows package do: :func:`lmloop.core.settings.freeze_heap_at_exit`) and without (Python's default
teardown, which walks every object a command that loaded torch, Prefect, MLflow and Great Expectations holds).

    python benchmarks/cli_exit.py [--rounds 2] [--json]

Each round runs the same tiny ``lmloop run`` (sample data, a 2-layer model, a few steps, its own temporary
Prefect server) once each way, and times from the command's last line of output to the process's end: the
atexit work (Prefect draining its queues, the temporary server stopped) and the interpreter's teardown.
Medians over the rounds; one JSON line with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = [
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.block_size=64",
    "tokenizer.vocab_size=512",
    "train.max_steps=20",
    "train.warmup_steps=5",
    "train.batch_size=8",
    "eval.samples=1",
    "eval.max_new_tokens=8",
]
# the CLI as installed, or with its exit-time freeze taken back out (Python's default teardown)
LAUNCH = {
    "frozen": "from cli.main import app; app(prog_name='lmloop')",
    "default": "import atexit, gc; from cli.main import app; atexit.unregister(gc.freeze); app(prog_name='lmloop')",
}


def exit_seconds(way: str, data: Path, home: Path) -> float:
    """Seconds from the command's last output line to its end."""
    env = {**os.environ, "LMLOOP_HOME": str(home)}
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    command = [sys.executable, "-c", LAUNCH[way], "run", "--data", str(data), *[a for s in SETS for a in ("--set", s)]]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = time.perf_counter()
    for _ in process.stdout:  # type: ignore[union-attr]
        last = time.perf_counter()
    if process.wait() != 0:
        raise SystemExit(f"lmloop run failed ({way}, exit {process.returncode}); its home: {home}")
    return time.perf_counter() - last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    seconds: dict[str, list[float]] = {way: [] for way in LAUNCH}
    with tempfile.TemporaryDirectory(prefix="lmloop-cli-exit-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run(
            [sys.executable, "-m", "cli", "sample-data", "--out", str(data), "--seed", "0"],
            cwd=ROOT,
            env={**os.environ, "LMLOOP_HOME": tmp},
            check=True,
            capture_output=True,
        )
        for r in range(args.rounds):
            for way in LAUNCH if r % 2 == 0 else reversed(LAUNCH):  # alternate the order: a VM drifts
                seconds[way].append(exit_seconds(way, data, Path(tmp) / f"home-{way}-{r}"))
    medians = {way: statistics.median(values) for way, values in seconds.items()}
    ratio = medians["default"] / medians["frozen"]
    if args.json:
        print(json.dumps({"exit_s": medians, "rounds": seconds, "default_over_frozen": round(ratio, 2)}))
        return
    for way, value in medians.items():
        print(f"{way:8s} exit {value:6.2f} s  (rounds: {', '.join(f'{v:.2f}' for v in seconds[way])})")
    print(f"default teardown / frozen heap: {ratio:.2f}x")


if __name__ == "__main__":
    main()
