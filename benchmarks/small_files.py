"""Many small files: N one-sentence files through ingest (cleaning, the GX file suite, shards, reports).

    python benchmarks/small_files.py [--files 20000] [--json]

Prints files/s for the first run and for a re-run on unchanged files (everything from the cache), and one
JSON line with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmloop.core.settings import configure_environment  # noqa: E402

configure_environment()

from lmloop.core.config import DataConfig, ValidationConfig  # noqa: E402
from lmloop.data.planning import ingest_files  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lmloop-small-files-"))
    folder = root / "files"
    folder.mkdir()
    for i in range(args.files):
        (folder / f"note-{i:06d}.txt").write_text(f"One sentence, number {i}, about the weather today.\n")
    figures = {"files": args.files}
    for name in ("first_run", "unchanged_rerun"):
        start = time.perf_counter()
        reports = ingest_files([str(folder)], DataConfig(), ValidationConfig(min_rows=1), cache=root / "cache")
        seconds = time.perf_counter() - start
        assert all(r.status == "accepted" for r in reports)
        figures[f"{name}_files_per_s"] = round(len(reports) / seconds, 1)
        figures[f"{name}_seconds"] = round(seconds, 2)
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
