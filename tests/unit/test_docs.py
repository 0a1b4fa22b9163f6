"""The documentation: the README stays a five-minute read whose links resolve, and the MkDocs site builds
with ``--strict`` (a broken link, a missing page or a page outside the nav fails), its CLI reference
generated from the commands' own help."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lmloop.core.settings import PROJECT_ROOT


def test_the_readme_is_short_and_its_links_resolve() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.encode()) < 10_000
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (PROJECT_ROOT / target).exists(), target


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(mkdocs, capture_output=True, text=True, cwd=root, timeout=300, env=env)


def test_the_site_builds_strict_with_the_cli_reference(tmp_path: Path) -> None:
    proc = _build(PROJECT_ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for command in ("lmloop run", "lmloop continual", "lmloop approve", "--notify-webhook"):
        assert command in cli, command
    assert "Two commands" in (tmp_path / "site" / "index.html").read_text()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(PROJECT_ROOT / "docs", root / "docs")
    shutil.copytree(PROJECT_ROOT / "cli", root / "cli")
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    page = root / "docs" / "serving.md"
    page.write_text(page.read_text() + "\nSee [the missing page](nowhere.md).\n")
    proc = _build(root, tmp_path / "site")
    assert proc.returncode != 0 and "nowhere.md" in proc.stderr, proc.stderr[-2000:]
