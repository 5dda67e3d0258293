"""Shared fixtures. Airflow reads its settings at import, so they are set here first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="recsys-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["RECSYS_TASK_RETRIES"] = "0"  # a failing task fails the test run at once
os.environ.setdefault("RECSYS_HOME", tempfile.mkdtemp(prefix="recsys-home-"))

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "dags", "e2e")  # fastest first; `make test-unit` runs `-m unit`


def pytest_collection_modifyitems(config, items):
    """Each test's tier: its folder's, raised by what it talks to (PostgreSQL or the S3 server:
    integration; a real Airflow run: dags) or by an explicit tier marker."""
    for item in items:
        folder = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        tiers = [folder if folder in TIERS else "unit", *(m.name for m in item.iter_markers() if m.name in TIERS)]
        fixtures = set(item.fixturenames)
        if fixtures & {"postgres_url", "s3_endpoint"}:
            tiers.append("integration")
        if "airflow_db" in fixtures:
            tiers.append("dags")
        tier = max(tiers, key=TIERS.index)
        if tier not in {m.name for m in item.iter_markers()}:
            item.add_marker(tier)


POSTGRES_URL = os.environ.get("RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def recsys_home(tmp_path, monkeypatch):
    """An empty embedded deployment: SQLite results and a local artifact folder."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    for name in ("RECSYS_SOURCE_URI", "RECSYS_DB_URL", "RECSYS_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture()
def postgres_url():
    """A fresh schema in the local PostgreSQL `test` database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server on localhost (moto's standalone server) for the session."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's SQLite metadata database, migrated once per test session."""
    from airflow.utils.db import upgradedb

    upgradedb()
    return _AIRFLOW_HOME
