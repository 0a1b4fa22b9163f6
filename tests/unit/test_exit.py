"""Entry points freeze the heap at exit: the interpreter's teardown collections then skip the million
objects a command holds (seconds on 2 cores, ``benchmarks/cli_exit.py``), after every other exit handler."""

import subprocess
import sys

import pytest

from lmloop.core.settings import PROJECT_ROOT

# an exit handler registered before the entry point's module is imported runs after its freeze (LIFO)
PROBE = """
import atexit, gc
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
import {module}
atexit.register(lambda: print("still collecting before:", gc.get_freeze_count() == 0))
"""


@pytest.mark.parametrize("module", ["cli.main", "flows"])  # the CLI, and a deployment's flow-run process
def test_an_entry_point_freezes_the_heap_last_at_exit(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["still collecting before: True", "frozen at exit: True"], out.stdout
