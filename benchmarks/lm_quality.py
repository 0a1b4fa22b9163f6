"""What the default preset learns from real text, at a fixed seed: test bits per byte and perplexity of
``lmloop run`` (the ``tiny`` preset, its 300 steps) on the installed manual pages' one-line NAME descriptions
(about 19k short real descriptions; :mod:`benchmarks.man_pages`, built on the fly, never committed), beside
the unigram baseline on the same test split.

    python benchmarks/lm_quality.py [--json] [--seeds 3] [--checkout DIR] [--preset tiny] [--set section.key=value ...]

The default preset trains about eight epochs over these ~80k tokens: one seed's figure swings by up to
0.05 bits per byte (near-duplicates kept, seeds 1337, 1, 2: 1.631, 1.623, 1.675), so the figure is the mean
over ``--seeds`` seeds (``train.seed`` 0..N-1) with its spread, and a change is seen when it moves the mean by
more than the spread.

``--checkout DIR`` runs another checkout's ``lmloop run`` (another commit, with this environment) on the same
data and seed: how a change to the library moves what the model learns is found by running it at both commits
(``git worktree add DIR COMMIT``). Same data, same seed, same preset: the figure moves only when learning does.
The JSON's ``baseline`` names what the ratio is against (the unigram model of the same test split).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.man_pages import build  # noqa: E402


def corpus(folder: Path) -> Path:
    """The descriptions as one JSONL file of texts (labels left out: a language model reads text only)."""
    path = folder / "man-names.jsonl"
    if not path.exists():
        rows = build()
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    return path


def _entry_point(checkout: Path) -> str:
    """The checkout's own ``lmloop`` entry point (``cli.main:app`` now; older commits had another)."""
    import tomllib

    return tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["scripts"]["lmloop"]


def run(checkout: Path, data: Path, preset: str, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="lm-quality-") as home:
        env = {**os.environ, "LMLOOP_HOME": home, "PYTHONPATH": str(checkout)}
        module, _, app = _entry_point(checkout).partition(":")
        launcher = f"import sys; from {module} import {app}; {app}(prog_name='lmloop')"
        args = [sys.executable, "-c", launcher, "run", "--config", preset, "--data", str(data), "--json"]
        for assignment in ["registry.model_name=lm-quality", *sets]:
            args += ["--set", assignment]
        start = time.perf_counter()
        proc = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"lmloop run failed in {checkout} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    metrics, validation = out["metrics"], out.get("validation", {})
    return {
        "test_bits_per_byte": metrics["test_bits_per_byte"],
        "test_perplexity": metrics["test_perplexity"],
        "unigram_perplexity": metrics["unigram_perplexity"],
        "train_final_loss": metrics.get("train_final_loss"),
        "test_documents": metrics.get("test_documents"),
        "rows": validation.get("rows"),
        "duplicates_removed": validation.get("duplicates_removed"),
        "near_duplicates_removed": validation.get("near_duplicates_removed"),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="The lmloop checkout to run (default: this one).")
    parser.add_argument("--preset", default="tiny", help="The preset (default: tiny, lmloop run's default).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="A config override; repeatable.")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "lmloop-lm-quality")
    parser.add_argument("--seeds", type=int, default=3, help="Seeds to average over (train.seed 0..N-1).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    data = corpus(args.data_dir)
    runs = [run(args.checkout.resolve(), data, args.preset, [*args.sets, f"train.seed={s}"]) for s in range(args.seeds)]
    result = {k: sum(r[k] for r in runs) / len(runs) for k in ("test_bits_per_byte", "test_perplexity")}
    result |= {k: runs[0][k] for k in runs[0] if k not in result}  # the data-side figures: the same for every seed
    result["seconds"] = round(sum(r["seconds"] for r in runs), 1)
    bpb = [r["test_bits_per_byte"] for r in runs]
    result |= {"seeds": args.seeds, "per_seed_bits_per_byte": bpb, "spread_bits_per_byte": max(bpb) - min(bpb)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.checkout, capture_output=True, text=True)
    result |= {
        "checkout": str(args.checkout),
        "commit": commit.stdout.strip(),
        "preset": args.preset,
        "sets": args.sets,
        "documents": sum(1 for _ in data.open()),
        "baseline": "unigram model of the same test split (unigram_perplexity)",
        "perplexity_vs_unigram": result["test_perplexity"] / result["unigram_perplexity"],
    }
    print(
        f"{result['commit']}: test bits/byte {result['test_bits_per_byte']:.4f} (mean of {args.seeds} seeds, spread "
        f"{result['spread_bits_per_byte']:.4f}), perplexity "
        f"{result['test_perplexity']:.1f} (unigram {result['unigram_perplexity']:.1f}), "
        f"{result['rows']} documents kept of {result['documents']}, {result['seconds']:.0f} s"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
