"""The reader kit (recsys_tasks.reader), run as an application would: its own process, a login
role granted only `recsys_reader`, against PostgreSQL."""

import dataclasses
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import make_url

from recsys_tasks import db as results_db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import config_from_env
from recsys_tasks.reader import READER_QUERY
from recsys_tasks.scoring import companions

ITEMS = ["i1", "i2", "i3", "gone"]  # "gone" is unavailable in the catalogue

APP = """
import json, sys
from recsys_tasks.reader import Reader
with Reader(sys.argv[1]) as reader:
    out = {
        "known": reader.recommend("u1", k=2),
        "unknown": reader.recommend("nobody-yet", k=5),
        "detailed": reader.detailed("u1", k=2),
        "similar": reader.similar("i1", k=5),
        "similar_unavailable": reader.similar("gone", k=5),
        "run": reader.current_run(),
        "pages": [len(page) for page in reader.pages(rows=4)],
        "heavy_imports": sorted(m for m in ("pandas", "torch", "airflow", "numpy") if m in sys.modules),
    }
print(json.dumps(out, default=str))
"""


def lists() -> pd.DataFrame:
    return pd.DataFrame([
        {"user_id": f"u{u}", "rank": r + 1, "item_id": f"i{r + 1}", "score": 2.0 - r, "model_version": "v-1",
         "probability": 0.3 / (r + 1), "because_item_id": "i3", "because_score": 0.8, "reason": "history"}
        for u in range(3) for r in range(3)
    ])


def test_an_app_reads_lists_fallback_similar_items_and_the_run_as_the_reader_role(postgres_url, tmp_path):
    config = dataclasses.replace(config_from_env({}), db_url=postgres_url)
    tables = results_db.Tables.from_config(config)
    engine = results_db.make_engine(postgres_url)
    results_db.apply_schema(engine, tables)
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.95, 0.05]], dtype=np.float32)
    blocked = np.array([False, False, False, False, True])  # by token; "gone" is token 4
    extras = {
        "fallback": pd.DataFrame({"rank": [1, 2], "item_id": ["i2", "i3"], "score": [9.0, 4.0]}),
        "similar": companions.similar(vectors, ITEMS, 2, blocked),
        "items": companions.catalogue_snapshot(
            ITEMS, pd.DataFrame({"item_id": ["i1", "i3"], "title": ["<script>alert(1)</script> Lip balm", "Shampoo"]}),
            pd.DataFrame({"item_id": ["i1", "i1"], "attribute": ["brand=acme", "category=lips"]}), blocked),
    }
    results_db.publish_recommendations(engine, tables, "run-1", lists(), 5, companions=extras)
    results_db.record_run(engine, tables, "run-1", "published", model_version="v-1", rows_written=9, users=3,
                          published_at=utcnow())
    login = f"app_{uuid.uuid4().hex[:8]}"  # an application's login role, granted the reader role only
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {login} LOGIN IN ROLE {tables.reader_role}")
    try:
        url = make_url(postgres_url).set(username=login).render_as_string(hide_password=False)
        done = subprocess.run([sys.executable, "-c", APP, url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {login}")
            conn.exec_driver_sql(f"DROP ROLE {login}")
        engine.dispose()

    assert [(r["rank"], r["item_id"], r["reason"], r["because_item_id"]) for r in out["known"]] == [
        (1, "i1", "history", "i3"), (2, "i2", "history", "i3")]
    assert all(0 <= r["probability"] <= 1 for r in out["known"])
    # an unknown user gets the run's fallback list, and says so
    assert [(r["item_id"], r["reason"], r["strategy"], r["run_id"]) for r in out["unknown"]] == [
        ("i2", "trending", "fallback", "run-1"), ("i3", "trending", "fallback", "run-1")]
    assert [r["similar_item_id"] for r in out["similar"]] and "gone" not in {r["similar_item_id"] for r in out["similar"]}
    assert [(r["item_id"], r["title"], r["attributes"], r["because_title"]) for r in out["detailed"]] == [
        ("i1", "<script>alert(1)</script> Lip balm", "brand=acme|category=lips", "Shampoo"), ("i2", None, None, "Shampoo")]
    assert out["similar_unavailable"] == []  # an unavailable item has no similar items, and no error
    assert out["run"]["run_id"] == "run-1" and out["run"]["model_version"] == "v-1" and out["run"]["users"] == 3
    assert out["pages"] == [4, 4, 1]  # all 9 rows, 4 at a time
    assert out["heavy_imports"] == []


def test_the_sql_file_for_other_languages_is_the_kit_s_statement():
    text = Path(__file__).resolve().parents[2].joinpath("sql", "reader_query.sql").read_text()
    statement = "\n".join(line for line in text.splitlines() if not line.startswith("--")).strip()
    assert statement == READER_QUERY.strip()


def test_the_kit_reads_sqlite_too(tmp_path):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    config = dataclasses.replace(config_from_env({}), db_url=url)
    tables = results_db.Tables.from_config(config)
    engine = results_db.make_engine(url)
    results_db.publish_recommendations(engine, tables, "run-1", lists(), 5)
    engine.dispose()
    done = subprocess.run([sys.executable, "-c", APP, url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["item_id"] for r in out["known"]] == ["i1", "i2"] and out["unknown"] == []  # no fallback list published
    assert out["pages"] == [4, 4, 1] and out["run"]["run_id"] == "run-1"
