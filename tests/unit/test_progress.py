"""Progress: a rich bar on a terminal, plain periodic lines otherwise, nothing when turned off."""

import pytest

from lmloop.core import progress as progress_mod
from lmloop.core.progress import progress


def test_plain_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("LMLOOP_PROGRESS", "auto")  # pytest's stderr is not a TTY
    monkeypatch.setenv("LMLOOP_PROGRESS_INTERVAL", "0")
    with progress("train", 4, "steps", completed=1) as advance:
        for _ in range(3):
            advance(1)
    lines = [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines() if " train: " in line]
    assert lines[0].startswith("train: 1/4 steps (25%)"), "the stage announces itself at once"
    assert lines[1].startswith("train: 2/4 steps (50%)") and lines[-1].startswith("train: 4/4 steps (100%)")
    assert len(lines) == 5  # the first, one per advance (interval 0) and the final line


def test_bar_on_a_terminal_and_off(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("LMLOOP_PROGRESS", "bar")
    with progress("evaluate", 10, "windows") as advance:
        advance(10)
        assert progress_mod._live
        with progress("nested", 2) as inner:  # one live display at a time: the inner one goes plain
            inner(2)
    assert not progress_mod._live
    assert "evaluate" in capsys.readouterr().err
    monkeypatch.setenv("LMLOOP_PROGRESS", "off")
    with progress("quiet", 1) as advance:
        advance(1)
    monkeypatch.setenv("LMLOOP_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="LMLOOP_PROGRESS"), progress("x", 1):
        pass
