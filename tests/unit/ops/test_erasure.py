"""Erasure: after `forget_users`, no table and no artifact holds a trace of the user."""

import io
import re

import boto3
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recsys_tasks import airflow_adapter
from recsys_tasks import db as results_db
from recsys_tasks.config import config_from_env
from recsys_tasks.data.prepare import Sequences, build_sequences
from recsys_tasks.data.sources import write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.ops.erasure import ERASED, forget_users, id_pattern, scrub_html, scrub_json, without_users
from recsys_tasks.storage.layout import run_key

GONE = "erase-me-7f3a"  # cannot occur by accident in anything the pipeline writes


def test_ids_match_whole():
    pattern = id_pattern(["u1", "a.b"])
    assert (
        pattern.sub("#", "u1, u12, xu1, 'u1', a.b, a.bc, u1.5, 0.u1, [u1], u1.")
        == "#, u12, xu1, '#', #, a.bc, u1.5, 0.u1, [#], #."
    )


def test_json_scrubbing_leaves_items_alone():
    report = {
        "checks": [{"column": "user_id", "examples": ["u1", "u2"]}, {"examples": [{"user_id": "u1", "item_id": "u1"}]}],
        "message": "e.g. ['u1']",
        "per_user": {"u1": [1, 2], "u2": [3]},
        "items": ["u1", "i2"],
        "item_counts": {"u1": 4},
    }
    assert scrub_json(report, id_pattern(["u1"])) == {
        "checks": [{"column": "user_id", "examples": [ERASED, "u2"]}, {"examples": [{"user_id": ERASED, "item_id": ERASED}]}],
        "message": f"e.g. ['{ERASED}']",
        "per_user": {"u2": [3]},
        "items": ["u1", "i2"],
        "item_counts": {"u1": 4},
    }


def test_html_scrubbing_spares_tags_scripts_and_styles():
    page = '<td class="u1">u1</td><script>var u1 = 1;</script><style>.u1 {}</style><p>user u1.</p>'
    assert scrub_html(page, id_pattern(["u1"])) == (
        f'<td class="u1">{ERASED}</td><script>var u1 = 1;</script><style>.u1 {{}}</style><p>user {ERASED}.</p>'
    )


def test_sequences_lose_the_users_and_keep_everyone_else():
    seqs = Sequences(
        user_ids=["a", "b", "c"], item_ids=["x", "y", "z"], offsets=np.array([0, 2, 5, 6]),
        items=np.array([1, 2, 3, 1, 2, 3]), last_ts=np.array([10, 20, 30]),
    )
    pruned = without_users(seqs, ["b"])
    assert pruned.user_ids == ["a", "c"] and pruned.item_ids == ["x", "y", "z"]
    assert pruned.offsets.tolist() == [0, 2, 3] and pruned.items.tolist() == [1, 2, 3] and pruned.last_ts.tolist() == [10, 30]
    assert [pruned.sequence(u).tolist() for u in range(2)] == [[1, 2], [3]]
    assert without_users(seqs, ["nobody"]) is None


@pytest.fixture()
def deployment(recsys_home, airflow_db, s3_endpoint, postgres_url, monkeypatch):
    """Results on PostgreSQL, artifacts on S3, the log in the embedded SQLite; one user renamed to GONE and
    given a repeated event, so validation quotes the id in its examples."""
    bucket = f"erase-{recsys_home.name.replace('_', '-').lower()[-20:]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("RECSYS_ARTIFACT_ROOT", f"s3://{bucket}/recsys")
    monkeypatch.setenv("RECSYS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("RECSYS_DB_URL", postgres_url)
    log = generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3))
    log["user_id"] = log["user_id"].replace("u7", GONE)
    log = pd.concat([log, log[log["user_id"] == GONE].head(1)], ignore_index=True)  # one duplicate event
    config = config_from_env()
    write_interactions(log, config.source_uri)
    schema = re.search(r"search_path%3D(\w+)", postgres_url).group(1)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    return config, s3, bucket, schema, int((log["user_id"] == GONE).sum())


def _read(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _traces(config, s3, bucket, schema):
    """Every place the id shows: text columns of every table in the schema, raw bytes of every
    object, user_id columns of Parquet files, users of sequence files."""
    found = []
    engine = sa.create_engine(config.db_url)
    with engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT c.table_name, c.column_name FROM information_schema.columns AS c "
                "JOIN information_schema.tables AS t USING (table_schema, table_name) "
                "WHERE c.table_schema = :s AND t.table_type = 'BASE TABLE' AND c.data_type IN ('text', 'character varying')"
            ),
            {"s": schema},
        ).all()
        for table, column in columns:
            hits = conn.execute(sa.text(f'SELECT COUNT(*) FROM {schema}."{table}" WHERE "{column}" LIKE :p'), {"p": f"%{GONE}%"})
            if hits.scalar():
                found.append(f"{table}.{column}")
    engine.dispose()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for key in [obj["Key"] for page in pages for obj in page.get("Contents", [])]:
        data = _read(s3, bucket, key)
        if GONE.encode() in data:
            found.append(key)
        elif key.endswith(".parquet") and "user_id" in (frame := pd.read_parquet(io.BytesIO(data))):
            if (frame["user_id"] == GONE).any():
                found.append(key)
        elif key.endswith("sequences.npz") and GONE in Sequences.from_bytes(data).user_ids:
            found.append(key)
    return found


def test_a_forgotten_user_leaves_no_trace_in_tables_or_artifacts(deployment):
    config, s3, bucket, schema, events = deployment
    outcome = airflow_adapter.run_dag(
        "recsys_nightly", {"epochs": 6, "pretrain_epochs": 1, "top_k": 5, "num_shards": 3, "gate_min_lift": -0.5}
    )
    assert outcome["state"] == "success", outcome["tasks"]
    key = run_key(outcome["run_id"])
    before = _traces(config, s3, bucket, schema)
    # the user is everywhere it should be: published rows, the log, sequences, shards, the validation report
    assert "recommendations.user_id" in before, before
    for where in (f"runs/{key}/interactions.parquet", f"runs/{key}/sequences.npz", f"runs/{key}/validation.json"):
        assert f"recsys/{where}" in before, before
    assert any("/recommendations/shard-" in t for t in before)

    forgotten = forget_users(config, [GONE])

    assert _traces(config, s3, bucket, schema) == []
    assert forgotten["remaining"] == [] and forgotten["binary_mentions"] == []
    assert forgotten["database"]["recommendations"] == 5  # top_k rows of the one published run
    assert forgotten["artifacts"]["interactions_rows"] == events
    assert forgotten["artifacts"]["sequence_users"] == 1 and forgotten["artifacts"]["recommendation_rows"] == 5
    assert forgotten["artifacts"]["json_files"] >= 2  # the run's validation report and its copy beside the model
    assert forgotten["notes"][0] == f"the source table interactions still holds {events} events of these users"

    # everyone else is untouched: readers still see the run, and its artifacts still load
    engine = results_db.make_engine(config.db_url)
    view = results_db.read_current(engine, results_db.Tables.from_config(config))
    engine.dispose()
    assert view["user_id"].nunique() == 299 and set(view["run_id"]) == {outcome["run_id"]}
    seqs = Sequences.from_bytes(_read(s3, bucket, f"recsys/runs/{key}/sequences.npz"))
    rebuilt = build_sequences(
        pd.read_parquet(io.BytesIO(_read(s3, bucket, f"recsys/runs/{key}/interactions.parquet"))), seqs.item_ids
    )
    assert seqs.user_ids == rebuilt.user_ids and seqs.items.tolist() == rebuilt.items.tolist()

    again = forget_users(config, [GONE])
    assert again["artifacts"] == {} and set(again["database"].values()) == {0}
