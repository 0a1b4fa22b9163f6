"""Classification on real text: the installed manual pages' NAME lines, labelled by section
(:mod:`benchmarks.man_pages`, built on the fly, never committed), on one fixed hash split.

    python benchmarks/classify_real.py [--json] [--skip-lmloop] [--preset tiny] [--steps N] [--unlabelled man-bodies]
    python benchmarks/classify_real.py --base PATH_OR_HF_ID [--set finetune.epochs=3] [--json]

Prints accuracy, macro-F1 and wall seconds for: the majority class, TF-IDF (word 1-2 + char 2-5 grams) +
logistic regression with C chosen on the validation split, and lmloop's whole path from raw text
(``lmloop run`` on the training texts, then ``lmloop finetune --task classification --test-data``), scored
on exactly the same test rows. With ``--json`` the last line is one JSON object. ``--unlabelled man-bodies``
adds unlabelled text to the pretraining step (the recipe's "pretrain on unlabelled text" half): the opening
of every manual page whose description is not a test row (:func:`benchmarks.man_pages.bodies`).
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

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.man_pages import bodies, build, split_of  # noqa: E402


def _scores(y_true: list[str], y_pred: list[str], seconds: float) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), 4),
        "seconds": round(seconds, 1),
    }


def majority(splits: dict[str, list[dict]]) -> dict[str, float]:
    start = time.perf_counter()
    labels, counts = np.unique([r["label"] for r in splits["train"]], return_counts=True)
    top = str(labels[counts.argmax()])
    return _scores([r["label"] for r in splits["test"]], [top] * len(splits["test"]), time.perf_counter() - start)


def tfidf(splits: dict[str, list[dict]]) -> dict[str, float]:
    """lmloop's own baseline (:func:`lmloop.training.classify.tfidf_baseline`: word and character n-grams, C from a
    small grid by validation macro-F1), the one a classifier must beat to be crowned."""
    from lmloop.training.baseline import tfidf_baseline
    from lmloop.training.classify import label_map

    start = time.perf_counter()
    rows = {k: [(r["text"], r["label"]) for r in v] for k, v in splits.items()}
    labels = label_map([lab for _, lab in rows["train"]])
    names = sorted(labels, key=labels.get)
    predicted, c = tfidf_baseline(rows["train"], rows["test"], labels, validation=rows["validation"])
    out = _scores([lab for _, lab in rows["test"]], [names[i] for i in predicted], time.perf_counter() - start)
    return {**out, "C": c}


def _write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def lmloop_path(
    splits: dict[str, list[dict]],
    preset: str,
    steps: int | None,
    work: Path,
    unlabelled: str,
    base: str | None = None,
    extra: list[str] | None = None,
) -> dict[str, float]:
    """lmloop from raw text: pretrain on the training texts (and ``unlabelled`` text), then fine-tune a
    classifier, scored on the benchmark's test rows through ``--test-data``. With ``base`` (a model folder
    or hf:org/name) no pretraining: the classifier starts from that checkpoint."""
    env = {**os.environ, "LMLOOP_HOME": str(work / "home")}
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train = _write(splits["train"] + splits["validation"], data / "labelled.jsonl")
    test = _write(splits["test"], work / "test.jsonl")
    if unlabelled == "man-bodies":  # built inside the timed path: it is part of what lmloop costs
        _write([{"text": body} for body in bodies()], data / "unlabelled.jsonl")
    sets = ["--set", "registry.model_name=man-pages"] + (["--set", f"train.max_steps={steps}"] if steps else [])
    cli = [sys.executable, "-m", "cli"]
    if base is None:
        pretrain = subprocess.run(
            [*cli, "run", "--config", preset, "--data", str(data), *sets, "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        if pretrain.returncode != 0:
            raise SystemExit(f"lmloop run failed:\n{pretrain.stderr[-3000:]}")
    finetune = subprocess.run(
        [
            *cli,
            "finetune",
            "--task",
            "classification",
            "--data",
            str(train),
            "--test-data",
            str(test),
            "--set",
            "registry.model_name=man-pages",
            *(["--from", base] if base else []),
            *[a for assignment in extra or [] for a in ("--set", assignment)],
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if finetune.returncode != 0:
        raise SystemExit(f"lmloop finetune failed:\n{finetune.stderr[-3000:]}")
    result = json.loads(finetune.stdout.strip().splitlines()[-1])
    metrics = result["metrics"]
    return {
        "base": base or f"lmloop run --config {preset} (from scratch)",
        "champion": "champion" in result.get("aliases", []),  # crowned by the gate, never by hand
        "epochs_run": metrics["epochs_run"],
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "seconds": round(time.perf_counter() - start, 1),
        "baseline_accuracy_same_rows": round(metrics["baseline_accuracy"], 4),
        "test_documents": metrics["test_documents"],
        "accuracy_difference_ci95": [
            round(metrics["accuracy_difference_ci95_low"], 4),
            round(metrics["accuracy_difference_ci95_high"], 4),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-lmloop", action="store_true", help="Only the data set and the baselines.")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="Pretraining steps (default: the preset's).")
    parser.add_argument(
        "--unlabelled",
        choices=["none", "man-bodies"],
        default="none",
        help="Unlabelled text pretrained on beside the training texts (man-bodies: the pages' opening text, "
        "test pages left out).",
    )
    parser.add_argument(
        "--base",
        default=None,
        help="Start the classifier from this pretrained checkpoint (a model folder or hf:org/name) instead of "
        "pretraining from scratch.",
    )
    parser.add_argument("--set", dest="sets", action="append", default=[], help="Extra --set for the fine-tune.")
    args = parser.parse_args()
    rows = build()
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for row in rows:
        splits[split_of(row["text"])].append(row)
    classes = sorted({r["label"] for r in rows})
    print(
        f"{len(rows)} descriptions, {len(classes)} classes; train {len(splits['train'])}, "
        f"validation {len(splits['validation'])}, test {len(splits['test'])}"
    )
    results = {"majority": majority(splits), "tfidf_lr": tfidf(splits)}
    if not args.skip_lmloop:
        with tempfile.TemporaryDirectory(prefix="classify-real-") as work:
            results["lmloop"] = lmloop_path(
                splits, args.preset, args.steps, Path(work), args.unlabelled, args.base, args.sets
            )
    for name, r in results.items():
        print(f"{name:10s} accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  {r['seconds']:8.1f} s")
    if "lmloop" in results:
        base = results["tfidf_lr"]
        print(
            f"lmloop / TF-IDF+LR: accuracy {results['lmloop']['accuracy'] / base['accuracy']:.3f}, "
            f"macro-F1 {results['lmloop']['macro_f1'] / base['macro_f1']:.3f}"
        )
    if args.json:
        print(json.dumps({"rows": len(rows), "classes": len(classes), **results}))


if __name__ == "__main__":
    main()
