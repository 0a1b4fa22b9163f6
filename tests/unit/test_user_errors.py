"""A user's mistake is one clear message naming the cause and the fix, exit code 2, no traceback, and no
MLflow run left behind; the CLI starts without importing the heavy libraries it does not need."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lmloop.core.config import ConfigError
from lmloop.core.presets import load_config
from tests.conftest import MLFLOW_URIS


def _lmloop(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LMLOOP_HOME": str(home), "COLUMNS": "200"}
    for key in ("PREFECT_API_URL", "PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=120)


def _runs(home: Path) -> int:
    db = home / "mlruns" / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        try:
            return c.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:  # no tables: nothing was ever opened
            return 0


def _one_clear_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) <= 3, proc.stderr  # one message (rich may wrap it), not the same story 4-5 times
    return " ".join(lines)


def test_a_path_that_names_nothing(tmp_path: Path) -> None:
    message = _one_clear_line(_lmloop(tmp_path, "run", "--data", str(tmp_path / "nowhere")))
    assert "nowhere" in message and "no such file" in message
    assert _runs(tmp_path) == 0


def test_a_mistyped_set_key_gets_a_suggestion_and_is_not_blamed_on_the_preset(tmp_path: Path) -> None:
    message = _one_clear_line(_lmloop(tmp_path, "run", "--data", str(tmp_path), "--set", "train.max_stpes=3"))
    assert "did you mean train.max_steps" in message and "tiny.yaml" not in message


def test_a_csv_with_the_text_elsewhere_names_the_column_setting(tmp_path: Path) -> None:
    data = tmp_path / "notes.csv"
    data.write_text("id,content\n" + "".join(f"{i},some words number {i}\n" for i in range(50)))
    message = _one_clear_line(_lmloop(tmp_path, "run", "--data", str(data)))
    assert "no column 'text'" in message and "--set data.text_column=content" in message
    assert _runs(tmp_path) == 0


def test_no_champion_yet_is_a_user_error(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "a", "label": "x"}) + "\n")
    message = _one_clear_line(_lmloop(tmp_path, "finetune", "--task", "classification", "--data", str(data)))
    assert "champion" in message and "lmloop run" in message
    assert _runs(tmp_path) == 0


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = _lmloop(tmp_path, "--debug", "run", "--data", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_config_show_comments_stay_comments(tmp_path: Path) -> None:
    env_width = _lmloop(tmp_path, "config", "show", "--set", "train.max_steps=7")
    assert env_width.returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "config", "show", "--set", "train.max_steps=7"],
        env={**os.environ, "LMLOOP_HOME": str(tmp_path), "COLUMNS": "40"},
        capture_output=True,
        text=True,
    )
    comments = proc.stderr.splitlines()
    assert len(comments) == 2, proc.stderr  # before: all() of no line passed on an empty stderr
    assert all(line.startswith("#") for line in comments), "a narrow terminal wraps no comment"


def test_a_missing_landing_folder_is_a_warning_and_answers_without_a_server(tmp_path: Path) -> None:
    """The configured landing folder may not exist yet (the first cycle may come before any data)."""
    proc = _lmloop(tmp_path, "continual", "--set", f"continual.landing={tmp_path / 'landing'}", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["promoted"] is None and "does not exist" in out["warning"]
    assert not (tmp_path / ".prefect" / "server.log").exists(), "nothing to do: no Prefect server started"


@pytest.mark.parametrize("command", [["--help"], ["config", "show"]])
def test_start_up_imports_no_heavy_library(command: list[str], tmp_path: Path) -> None:
    code = (
        "import sys, runpy; sys.argv = ['lmloop', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'great_expectations', 'mlflow', 'prefect', 'datasets') "
        "if m in sys.modules]\nprint('HEAVY', heavy, file=sys.stderr)"
    )
    env = {**os.environ, "LMLOOP_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, *command], env=env, capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


def test_unknown_keys_in_yaml_and_overrides_get_suggestions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean data.text_column"):
        load_config("tiny", ["data.text_colum=body"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="did you mean train.learning_rate"):
        load_config(str(bad))
    assert load_config("tiny", ["data.storage_options={s3: {key: k}}"]).data.storage_options["s3"]["key"]


def test_a_mistyped_incoming_folder_is_a_mistake_not_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    proc = _lmloop(tmp_path, "continual", "--incoming", str(tmp_path / "landng"), "--json")
    message = _one_clear_line(proc)
    assert "no such folder" in message and "did you mean landing?" in message
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "error"


def test_a_mistyped_preset_gets_a_suggestion(tmp_path: Path) -> None:
    message = _one_clear_line(_lmloop(tmp_path, "run", "--config", "tniy", "--data", str(tmp_path)))
    assert "did you mean tiny?" in message


def test_a_bad_set_value_is_blamed_on_the_set_not_the_preset(tmp_path: Path) -> None:
    message = _one_clear_line(_lmloop(tmp_path, "run", "--data", str(tmp_path), "--set", "train.max_steps=ten"))
    assert "--set train.max_steps=ten" in message and "tiny.yaml" not in message
    bad = tmp_path / "mine.yaml"
    bad.write_text("train:\n  batch_size: -3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(bad), ["train.max_steps=ten"])
    assert f"{bad}: invalid config: train.batch_size" in str(caught.value), "the file for its own value"
    assert "--set train.max_steps=ten: invalid config: train.max_steps" in str(caught.value)


def _relabelled(tmp_path: Path) -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"words {i} here", "category": "ab"[i % 2]}) + "\n" for i in range(60)))
    return data


def test_a_label_column_under_another_name_is_named_before_a_classifier_runs(tmp_path: Path) -> None:
    data = _relabelled(tmp_path)
    message = _one_clear_line(_lmloop(tmp_path, "finetune", "--task", "classification", "--data", str(data)))
    assert "no column 'label'" in message and "did you mean 'category'?" in message
    assert "--set data.label_column=category" in message
    assert _runs(tmp_path) == 0


def test_run_warns_of_a_label_column_under_another_name(tmp_path: Path) -> None:
    from lmloop.ops.preflight import check_data

    notes = check_data([str(_relabelled(tmp_path))], load_config("tiny").data)
    assert len(notes) == 1 and "did you mean 'category'?" in notes[0]
    assert check_data([str(_relabelled(tmp_path))], load_config("tiny", ["data.label_column=category"]).data) == []


def test_a_mistyped_alias_names_the_aliases_there_are(tmp_path: Path) -> None:
    from lmloop.core.errors import NoModel
    from lmloop.ops.preflight import check_model
    from tests.conftest import mlflow_store, store_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_store(uri):
        client = store_client(uri)
        client.create_registered_model("m")
        version = client.create_model_version("m", str(tmp_path), run_id=None).version
        client.set_registered_model_alias("m", "champion", version)
        assert check_model("m", "champion") == str(version)
        with pytest.raises(NoModel, match=r"no alias 'chmpion'; did you mean champion\? its aliases: champion \(v1\)"):
            check_model("m", "chmpion")
        with pytest.raises(NoModel, match="train one first"):
            check_model("other", "champion")


@pytest.mark.parametrize("command", [["status", "--json"], ["continual", "--json"]])
def test_an_unreachable_store_is_one_line_naming_it_without_its_password(command: list[str], tmp_path: Path) -> None:
    from lmloop.ops.servers import free_port

    store = f"http://bob:canary-pw-7731@127.0.0.1:{free_port()}"
    env = {**os.environ, "LMLOOP_HOME": str(tmp_path), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "COLUMNS": "200"}
    env |= dict.fromkeys(MLFLOW_URIS, store)
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "cli", *command], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "did not answer" in proc.stderr and "bob:***@127.0.0.1" in proc.stderr
    assert "canary-pw-7731" not in proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "failed"
