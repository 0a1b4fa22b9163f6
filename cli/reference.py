"""The generated pages of the documentation, made at every ``mkdocs build`` by this MkDocs hook
(``mkdocs.yml``): the command-line reference (``cli.md``) from the commands' own help with Typer's
Markdown generator, so it can never disagree with ``lmloop --help``; and the home page (``index.md``),
which is the README with its links made relative to ``docs/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cli_reference() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from cli.main import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, obj={})
    text = get_docs_for_click(obj=command, ctx=ctx, name="lmloop", title="Command-line reference")
    note = (
        "Generated from each command's `--help` when the documentation is built. With `--json` the last line "
        "a command prints to stdout is one JSON object; a user's mistake exits 2, rejected data or a failed "
        "stage 1, an interruption 130.\n\n"
    )
    head, _, rest = text.partition("\n")
    return f"{head}\n\n{note}{rest.strip()}\n"


def home_page(readme: Path) -> str:
    """The README as the site's home page: its links into ``docs/`` made relative to it."""
    return (
        readme.read_text()
        .replace("](docs/", "](")
        .replace("the command line (generated", "[the command line](cli.md) (generated")
    )


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the documentation's files."""
    from mkdocs.structure.files import File

    readme = Path(config["config_file_path"]).parent / "README.md"
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    files.append(File.generated(config, "index.md", content=home_page(readme)))
    return files
