"""Small readers the end-to-end tests share: what downstream apps see, and the run table."""

import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from recsys_tasks import db as results_db


def _datasets_dir() -> Path:
    """../shared/datasets beside the checkout (as CI lays it out); RECSYS_DATASETS overrides,
    and the workspace copy serves a clone made elsewhere (e.g. /tmp/check)."""
    candidates = [os.environ.get("RECSYS_DATASETS"), Path(__file__).resolve().parents[2] / "shared" / "datasets",
                  "/work/shared/datasets"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Beauty.txt").exists():
            return Path(candidate)
    raise FileNotFoundError(f"benchmark datasets not found in {candidates[1:]}; set RECSYS_DATASETS")


DATASETS = _datasets_dir()


def read_view(config):
    """Everything `recommendations_current` shows right now."""
    engine = results_db.make_engine(config.db_url)
    try:
        return results_db.read_current(engine, results_db.Tables.from_config(config))
    finally:
        engine.dispose()


def read_companion(config, name):
    """What `recommendations_fallback` ("fallback") or `similar_items_current` ("similar") shows."""
    tables = results_db.Tables.from_config(config)
    engine = results_db.make_engine(config.db_url)
    try:
        with engine.connect() as conn:
            view = tables.fallback_view if name == "fallback" else tables.similar_view
            return pd.read_sql(sa.text(f"SELECT * FROM {view}"), conn)
    finally:
        engine.dispose()


def run_record(config, run_id):
    engine = results_db.make_engine(config.db_url)
    try:
        return results_db.get_run(engine, results_db.Tables.from_config(config), run_id)
    finally:
        engine.dispose()


def stop_process_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a server started with `start_new_session=True` and its children; SIGKILL after `grace` s.
    A group that is already gone (the test stopped it as a user would) is fine."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait(10)
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def headless_chromium():
    """Debian's Chromium through Selenium, headless, 1280x900, its console log kept (the UI tests)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} missing: apt-get install chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

