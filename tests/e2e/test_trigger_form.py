"""The Trigger form of `recsys_nightly` as an operator uses it: `make ui` (airflow standalone:
scheduler, LocalExecutor, SQLite), a real Chromium, Trigger pressed with every default untouched,
and the run it starts succeeds. The number fields say what the form does with a value out of range."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from helpers import headless_chromium, stop_process_group

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, token: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    home = tmp_path_factory.mktemp("trigger")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "AIRFLOW"))}
    port = _free_port()
    # the nightly scheduled on an Asset nobody updates: unpausing it starts no run of its own
    env.update(RECSYS_HOME=str(home), AIRFLOW_HOME=str(home / "airflow"), RECSYS_TASK_RETRIES="0",
               RECSYS_SOURCE_ASSET="recsys://tests/never-updated", UI_PORT=str(port), PATH=f"{BIN}:{env['PATH']}")
    subprocess.run([str(BIN / "recsys"), "demo-data", "--users", "200", "--items", "80", "--out",
                    f"sqlite:///{home}/recsys.db?table=interactions"], env=env, check=True, capture_output=True)
    with open(home / "ui.log", "w") as log:
        proc = subprocess.Popen(["make", "ui"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, (home / "ui.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5):
                    break
            except OSError:
                assert time.time() < deadline, (home / "ui.log").read_text()[-3000:]
                time.sleep(2)
        with urllib.request.urlopen(f"{base}/auth/token", timeout=10) as r:  # all admins: no login
            token = json.loads(r.read())["access_token"]
        deadline = time.time() + 180
        while not _api(base, "/api/v2/dags?dag_id_pattern=recsys_nightly", token)["dags"]:
            assert time.time() < deadline, "recsys_nightly never parsed"
            time.sleep(3)
        _api(base, "/api/v2/dags/recsys_nightly", token, "PATCH", {"is_paused": False})
        yield {"base": base, "token": token, "home": home}
    finally:
        stop_process_group(proc, grace=30)


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium()
    yield driver
    driver.quit()


def _open_trigger_form(browser, base: str):
    browser.get(f"{base}/dags/recsys_nightly")
    deadline = time.time() + 60
    while not (buttons := browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")):
        assert time.time() < deadline, "no Trigger button on the DAG page"
        time.sleep(0.5)
    buttons[0].click()
    deadline = time.time() + 30
    while not (dialogs := browser.find_elements(By.CSS_SELECTOR, ".chakra-dialog__content")) \
            or "Run Parameters" not in dialogs[0].text:
        assert time.time() < deadline, "the trigger form did not open"
        time.sleep(0.5)
    return dialogs[0]


def test_trigger_with_every_default_starts_a_run_that_succeeds(ui, browser):
    form = _open_trigger_form(browser, ui["base"])
    # a number out of range is moved to the nearest bound by the form: its help says so
    assert "the form moves a value outside to the nearest bound" in form.text
    trigger = [b for b in form.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Trigger"][-1]
    assert trigger.is_enabled(), "Trigger is disabled with the defaults"
    browser.execute_script("arguments[0].scrollIntoView()", trigger)
    trigger.click()
    deadline = time.time() + 30
    while not (runs := _api(ui["base"], "/api/v2/dags/recsys_nightly/dagRuns", ui["token"])["dag_runs"]):
        assert time.time() < deadline, "pressing Trigger started no run"
        time.sleep(1)
    (run,) = runs
    assert run["run_type"] == "manual" and run["conf"]["top_k"] == 10 and run["conf"]["exclude_items"] is None
    deadline = time.time() + 900
    while (state := _api(ui["base"], f"/api/v2/dags/recsys_nightly/dagRuns/{run['dag_run_id']}", ui["token"])["state"]) \
            not in ("success", "failed"):
        assert time.time() < deadline, f"the run is still {state} after 15 minutes"
        time.sleep(5)
    assert state == "success", (ui["home"] / "ui.log").read_text()[-4000:]
