"""``settings.environment``: variables set for a block, and those the block may set, put back after it."""

import os

import pytest

from lmloop.settings import environment


def test_a_block_s_variables_and_the_ones_it_may_set_are_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMLOOP_T_SET", "before")
    for key in ("LMLOOP_T_NEW", "LMLOOP_T_EXPORTED"):
        monkeypatch.delenv(key, raising=False)
    with (
        pytest.raises(RuntimeError),
        environment({"LMLOOP_T_SET": "in", "LMLOOP_T_NEW": "in"}, restore=["LMLOOP_T_EXPORTED"]),
    ):
        assert (os.environ["LMLOOP_T_SET"], os.environ["LMLOOP_T_NEW"]) == ("in", "in")
        os.environ["LMLOOP_T_EXPORTED"] = "set by the block"
        raise RuntimeError("the block fails")
    assert os.environ["LMLOOP_T_SET"] == "before"
    assert "LMLOOP_T_NEW" not in os.environ and "LMLOOP_T_EXPORTED" not in os.environ
