"""The MLflow UI in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed here when missing) opens the registered model's page and sees the ``champion`` alias. The
screenshot is kept in ``test-artifacts/``. Where no browser can be installed the test is skipped and
says why."""

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from lmloop.core import settings
from lmloop.ops.servers import free_port, mlflow_ui_command, start, stop, wait_http
from tests.conftest import MLFLOW_URIS, TINY_OVERRIDES

pytestmark = pytest.mark.slow
ARTIFACTS = settings.PROJECT_ROOT / "test-artifacts"


def _install_chromium() -> str | None:
    """Paths present, or installed with apt-get; returns why not when it cannot be done."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return None
    if not shutil.which("apt-get"):
        return "no chromium/chromedriver and no apt-get to install them"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        return "no chromium/chromedriver, and installing them needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            proc = subprocess.run([*sudo, *command], env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command)} timed out"
        if proc.returncode != 0:
            return f"{' '.join(command)} failed: {proc.stderr.strip()[-300:]}"
    return None if shutil.which("chromium") and shutil.which("chromedriver") else "installed, but not on PATH"


def test_mlflow_ui_model_page_shows_the_champion_alias(trained: dict, tmp_path: Path) -> None:
    why = _install_chromium()
    if why:
        pytest.skip(f"browser check skipped: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    server = start(
        mlflow_ui_command(
            "127.0.0.1", port, tracking_uri=settings.tracking_uri(), artifact_root=settings.artifact_root()
        ),
        tmp_path / "mlflow-ui.log",
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process=server)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        name, version = trained["model_name"], trained["model_version"]
        driver.get(f"http://127.0.0.1:{port}/#/models/{name}")
        WebDriverWait(driver, 90).until(lambda d: "champion" in d.find_element(By.TAG_NAME, "body").text)
        body = driver.find_element(By.TAG_NAME, "body").text
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "mlflow-model-champion.png"))
    finally:
        if driver is not None:
            driver.quit()
        stop(server)
    assert name in body and f"Version {version}" in body and "champion" in body, body[:2000]
    assert (ARTIFACTS / "mlflow-model-champion.png").stat().st_size > 10_000


def _chrome():  # noqa: ANN202
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def _lmloop(args: list[str], home: Path) -> dict:
    """A CLI call with no Prefect server named: it must find the one ``lmloop ui`` runs for this home."""
    env = {**os.environ, "LMLOOP_HOME": str(home)}
    for key in ("PREFECT_API_URL", "PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (home / ".prefect" / "lmloop-server.json").exists(), "no temporary server of its own"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _shot(driver, url: str | None, expect: list[str], name: str) -> str:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if url:
        driver.get(url)
    body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
    try:
        WebDriverWait(driver, 90).until(lambda d: all(e in body(d) for e in expect))
    finally:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    return body(driver)


def test_the_dashboards_tell_the_loop_s_story(tmp_path: Path) -> None:
    """``lmloop ui`` on non-default ports; a pretrain and a continual cycle reported to its Prefect server
    (found without PREFECT_API_URL); then the experiment page (named runs, the cycle with its nested
    stages), the new version's page (the gate report), a run's dataset panel (schema) and the Prefect UI
    on its non-default port (the flow runs)."""
    why = _install_chromium()
    if why:
        pytest.skip(f"browser check skipped: {why}")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lmloop.data.sample_data import write_corpus

    home, mlflow_port, prefect_port = tmp_path / "home", free_port(), free_port()
    env = {**os.environ, "LMLOOP_HOME": str(home)}
    for key in ("PREFECT_API_URL", "PREFECT_HOME", *MLFLOW_URIS):
        env.pop(key, None)
    ui = subprocess.Popen(
        [sys.executable, "-m", "cli", "ui", "--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    driver = None
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        for line in ui.stderr:
            if "Ctrl-C" in line:
                break
        prefect = f"http://127.0.0.1:{prefect_port}"
        settings_page = json.loads(urllib.request.urlopen(f"{prefect}/ui-settings", timeout=10).read())
        assert settings_page["api_url"] == f"{prefect}/api", "the UI calls the API on its own port"
        write_corpus(tmp_path / "a", seed=0, docs=600, files=2)
        write_corpus(tmp_path / "landing", seed=7, shift=True, docs=300, files=1)
        sets = [a for s in TINY_OVERRIDES for a in ("--set", s)]
        trained = _lmloop(["run", "--data", str(tmp_path / "a"), *sets], home)
        cycle_sets = ["finetune.max_steps=20", "finetune.batch_size=8", "eval.max_documents=150"]
        cycle_sets += ["continual.bootstrap_samples=200"]
        cycle = _lmloop(
            [
                "continual",
                "--incoming",
                str(tmp_path / "landing"),
                *sets,
                *[a for s in cycle_sets for a in ("--set", s)],
            ],
            home,
        )
        name, version = trained["model_name"], cycle["challenger"]
        request = urllib.request.Request(
            f"{prefect}/api/artifacts/filter", data=b"{}", headers={"Content-Type": "application/json"}
        )
        artifacts = json.loads(urllib.request.urlopen(request, timeout=30).read())
        kinds = {(a["type"], a.get("key")) for a in artifacts}
        assert ("table", "stages") in kinds, kinds
        links = [a["data"] for a in artifacts if a["type"] == "markdown" and "#/models/" in (a["data"] or "")]
        assert any(f"#/models/{name}/versions/{trained['model_version']}" in link for link in links), kinds
        mlflow = f"http://127.0.0.1:{mlflow_port}"
        runs = json.loads(
            urllib.request.urlopen(f"{mlflow}/ajax-api/2.0/mlflow/runs/get?run_id={trained['run_id']}").read()
        )["run"]
        experiment = runs["info"]["experiment_id"]
        driver = _chrome()
        page = _shot(driver, f"{mlflow}/#/experiments/{experiment}/runs", ["6 matching runs"], "mlflow-experiment")
        assert "Traces" not in page.split("\n")[:5], "opens on training runs, not on GenAI traces"
        assert "6 matching runs" in page, "pretrain, the cycle and its three nested stages, the monitoring timeline"
        name_cell = driver.find_element(By.XPATH, "//a[starts-with(normalize-space(.), 'continual-')]/..")
        for expander in name_cell.find_elements(By.XPATH, "./preceding-sibling::*|.//*[name()='svg']/..|../*[1]"):
            try:
                expander.click()
            except Exception:  # noqa: BLE001, S112  (not clickable: try the next)
                continue
            if driver.find_elements(By.XPATH, "//a[normalize-space(.)='evaluate']"):
                break
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.XPATH, "//a[normalize-space(.)='gate']"))
        driver.save_screenshot(str(ARTIFACTS / "mlflow-experiment-nested.png"))
        _shot(driver, f"{mlflow}/#/models/{name}/versions/{version}", ["Gate: challenger", "95% CI"], "mlflow-version")
        run_page = f"{mlflow}/#/experiments/{experiment}/runs/{trained['run_id']}"
        _shot(driver, run_page, ["train"], "mlflow-run")

        def train_tag(d):  # noqa: ANN001, ANN202  (the dataset's tag renders after the page text)
            shown = [e for e in d.find_elements(By.XPATH, "//*[normalize-space(text())='train']") if e.is_displayed()]
            return shown[0] if shown else False

        WebDriverWait(driver, 60).until(train_tag).click()
        _shot(driver, None, ["Data details", "rows:", "doc_id"], "mlflow-dataset")
        _shot(driver, f"{prefect}/runs", ["training", "continual"], "prefect-runs")
        search = urllib.request.Request(  # the monitoring timeline: one step per cycle, charted
            f"{mlflow}/ajax-api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [experiment], "filter": f"tags.`lmloop.monitor` = '{name}'"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        monitor = json.loads(urllib.request.urlopen(search, timeout=30).read())["runs"][0]["info"]["run_id"]
        charts = f"{mlflow}/#/experiments/{experiment}/runs/{monitor}/model-metrics"
        _shot(driver, charts, ["monitor-", "batch_documents", "decision"], "mlflow-monitor-timeline")
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(ui.pid, signal.SIGINT)
        ui.wait(60)
