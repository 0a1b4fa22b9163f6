"""The MLflow UI in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed here when missing) opens the registered model's page and sees the ``champion`` alias. The
screenshot is kept in ``test-artifacts/``. Where no browser can be installed the test is skipped and
says why."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lmloop import settings
from lmloop.servers import free_port, mlflow_ui_command, start, stop, wait_http

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
    server = start(mlflow_ui_command("127.0.0.1", port), tmp_path / "mlflow-ui.log")
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
