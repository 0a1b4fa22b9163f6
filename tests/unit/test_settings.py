"""``settings.environment``: variables set for a block, and those the block may set, put back after it."""

import os

import pytest

from lmloop.core.settings import environment


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


def test_credentials_are_redacted_wherever_lmloop_shows_a_url_or_an_override(monkeypatch) -> None:
    from lmloop.core import settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://bob:canary-1@mlflow.example:8443")
    assert settings.mlflow_ui_url() == "https://bob:***@mlflow.example:8443"
    assert "canary" not in settings.redact("failed: API request to https://bob:canary-1@h/api failed")
    shown = settings.redact_assignments(
        [
            "data.storage_options={s3: {secret: canary-2}}",
            "train.max_steps=5",
            "x.api_token=canary-3",
            "tokenizer.vocab_size=512",
            "eval.max_new_tokens=32",
        ]
    )
    assert shown == [
        "data.storage_options=***",
        "train.max_steps=5",
        "x.api_token=***",
        "tokenizer.vocab_size=512",  # words that merely contain "token" are not secrets
        "eval.max_new_tokens=32",
    ]


def test_a_malformed_lock_url_never_echoes_its_password(tmp_path, monkeypatch) -> None:
    import pytest

    from lmloop.data.state import State
    from lmloop.promotion.moves import exclusive

    monkeypatch.setenv("LMLOOP_LOCK_URL", "postgresql://bob:canary-4@@nowhere.invalid:notaport/db")
    with pytest.raises(RuntimeError) as caught, exclusive("champion:m", State(tmp_path)):
        pass
    assert "canary-4" not in str(caught.value) and "bob:***@" in str(caught.value)


def test_the_resume_hint_never_prints_a_secret(monkeypatch) -> None:
    import sys

    from cli.running import same_command

    argv = ["lmloop", "run", "--set", "data.storage_options={s3: {secret: canary-5}}", "--set=x.password=canary-6"]
    monkeypatch.setattr(sys, "argv", [*argv, "--data", "s3://bob:canary-7@bucket/x"])
    hint = same_command()
    assert "canary" not in hint and "data.storage_options=***" in hint and "--data" in hint
