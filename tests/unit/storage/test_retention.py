"""Retention of run artifacts: kept runs keep their folders, production keeps its models."""

from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import pytest

from helpers import run_record
from recsys_tasks import airflow_adapter
from recsys_tasks import db as results_db
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.pipeline.learn import model_version_for
from recsys_tasks.storage import registry
from recsys_tasks.storage.artifacts import ArtifactStore
from recsys_tasks.storage.layout import run_key
from recsys_tasks.storage.retention import apply_retention, prune_runs, runs_to_keep

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"r{tmp_path.name.replace('_', '-').lower()[-20:]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return ArtifactStore(f"s3://{bucket}/recsys", endpoint_url=endpoint)


@pytest.fixture()
def db(tmp_path):
    engine = results_db.make_engine(f"sqlite:///{tmp_path / 'results.db'}")
    tables = results_db.Tables("recommendations", "recsys_runs", "recommendations_pointer", "recommendations_current")
    results_db.apply_schema(engine, tables)
    yield engine, tables
    engine.dispose()


def _run(engine, tables, run_id, day, status, version=None, published=False):
    results_db.record_run(engine, tables, run_id, status, model_version=version)
    with engine.begin() as conn:  # runs of other nights: set the dates record_run stamps with now
        conn.exec_driver_sql(
            "UPDATE recsys_runs SET started_at = ?, published_at = ? WHERE run_id = ?",
            (str(T0 + timedelta(days=day)), str(T0 + timedelta(days=day, hours=1)) if published else None, run_id),
        )


def _model(store, version, run_id=None):
    store.write_bytes(f"models/{version}/model.pt", b"w")
    if run_id:  # no lineage: a version still being written
        store.write_json(f"models/{version}/lineage.json", {"run_id": run_id})


def test_keeps_retained_and_recent_runs_production_models_and_the_latest_encoder(store, db):
    engine, tables = db
    _run(engine, tables, "r1", 1, "published", "v1", published=True)
    _run(engine, tables, "r2", 2, "published", "v2", published=True)
    _run(engine, tables, "r3", 3, "rejected", "v3")
    _run(engine, tables, "r4", 4, "published", "v4", published=True)
    _run(engine, tables, "r5", 5, "failed_validation")
    _run(engine, tables, "r6", 6, "prepared")  # in flight: training, its model not in the run table yet
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO recommendations_pointer VALUES ('recommendations_current', 'r4', '2026-11-05')")
    for run_id in ("r1", "r2", "r3", "r4", "r5", "r6", "orphan"):
        store.write_bytes(f"runs/{run_id}/interactions.parquet", b"12345")
    for run_id, version in (("r1", "v1"), ("r2", "v2"), ("r3", "v3"), ("r4", "v4")):
        _model(store, version, run_id)
    _model(store, model_version_for("r6"))  # r6 is writing it now
    _model(store, "v-half")  # a version whose run died half-way
    for run_id in ("r1", "r3", "r6"):
        store.write_bytes(f"encoders/{run_id}/encoder.pt", b"e")
    store.write_json("encoders/LATEST.json", {"encoder": "encoders/r1/encoder.pt"})
    registry.promote(store, "v1")
    registry.promote(store, "v4")  # production v4, v1 in its history

    assert set(runs_to_keep(engine, tables, retain_runs=2)) == {"r4", "r2", "r5", "r6"}
    outcome = apply_retention(store, engine, tables, retain_runs=2)

    assert outcome["kept_runs"] == ["r2", "r4", "r5", "r6"]
    assert store.folders("runs") == ["r2", "r4", "r5", "r6"]
    assert store.folders("encoders") == ["r1", "r6"]  # r1's is the latest, r6 is still pretraining
    assert store.folders("models") == sorted(["v1", "v2", "v4", model_version_for("r6")])
    assert sorted(outcome["removed"]) == ["encoders/r3", "models/v-half", "models/v3", "runs/orphan", "runs/r1", "runs/r3"]
    lineage = len('{\n  "run_id": "r3"\n}')  # models/v3/lineage.json
    assert outcome["objects_removed"] == 7 and outcome["bytes_freed"] == 3 * 5 + 1 + 1 + 1 + lineage
    assert store.exists("models/PRODUCTION.json") and store.exists("encoders/LATEST.json")

    assert apply_retention(store, engine, tables, retain_runs=2)["removed"] == []  # idempotent


def test_prune_runs_by_key(store):
    for key in ("a", "b"):
        store.write_bytes(f"runs/{key}/x", b"1")
        _model(store, f"v-{key}", key)
    assert prune_runs(store, {"b"}) == ["runs/a", "models/v-a"]
    assert store.list() == ["models/v-b/lineage.json", "models/v-b/model.pt", "runs/b/x"]


@pytest.fixture()
def seeded(recsys_home, airflow_db):
    config = config_from_env()
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), config.source_uri)
    return config


def test_after_real_runs_only_kept_runs_remain_and_production_survives(seeded, recsys_home):
    """Three nightly runs through Airflow, retention (retain_runs=1) after each."""
    params = {"epochs": 6, "pretrain_epochs": 1, "top_k": 5, "num_shards": 2, "gate_min_lift": -0.5}
    store = ArtifactStore(seeded.artifact_root)
    engine = results_db.make_engine(seeded.db_url)
    tables = results_db.Tables.from_config(seeded)

    first = airflow_adapter.run_dag("recsys_nightly", params)
    apply_retention(store, engine, tables, retain_runs=1)
    v1 = registry.production_version(store)
    second = airflow_adapter.run_dag("recsys_nightly", params)
    assert second["tasks"]["publish"] == "success", run_record(seeded, second["run_id"])["message"]
    outcome = apply_retention(store, engine, tables, retain_runs=1)
    v2 = registry.production_version(store)
    assert outcome["kept_runs"] == [second["run_id"]] and f"runs/{run_key(first['run_id'])}" in outcome["removed"]
    assert store.folders("runs") == [run_key(second["run_id"])]
    # v1 stays: production's history, a rollback target; each with the twin it is judged by
    assert v1.endswith("-refit") and v2.endswith("-refit")
    twins = {registry.judged_version(store, v) for v in (v1, v2)}
    assert store.folders("models") == sorted({v1, v2} | twins) and twins.isdisjoint({v1, v2})
    assert store.folders("encoders") == [run_key(first["run_id"])]  # the latest encoder, though its run is gone

    bad = read_interactions(seeded.source_uri)
    bad.loc[:10, "ts"] = pd.Timestamp("2100-01-01", tz="UTC")
    bad_uri = f"sqlite:///{recsys_home / 'bad.db'}?table=interactions"
    write_interactions(bad, bad_uri)
    third = airflow_adapter.run_dag("recsys_nightly", {**params, "source_uri": bad_uri})
    assert run_record(seeded, third["run_id"])["status"] == "failed_validation"
    apply_retention(store, engine, tables, retain_runs=1)
    # the failed run stays for inspection beside the published one; production is untouched
    assert store.folders("runs") == sorted(run_key(r["run_id"]) for r in (second, third))
    assert store.exists(f"runs/{run_key(third['run_id'])}/validation.json")
    assert registry.production_version(store) == v2 and registry.rollback(store)["model_version"] == v1
    assert store.exists(f"models/{v1}/model.pt")
    engine.dispose()
