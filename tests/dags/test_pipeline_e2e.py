"""The nightly DAG, run for real through Airflow (dag.test) on tiny synthetic data."""

import subprocess
import sys
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers import read_view, run_record
from recsys_tasks import airflow_adapter
from recsys_tasks import db as results_db
from recsys_tasks.config import config_from_env
from recsys_tasks.data.prepare import build_sequences
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.storage.layout import run_key

# from the encoder: a candidate warm-started from production could not regress as these tests need
# a floor half the strongest baseline's: on this tiny log a few epochs of the benchmark's recipe
# may trail EASE, and these tests are about publishing, not about the model's quality
TINY = {"epochs": 6, "pretrain_epochs": 1, "top_k": 5, "num_shards": 3, "warm_start_from": "encoder", "gate_min_lift": -0.5}


@pytest.fixture()
def seeded(recsys_home, airflow_db):
    config = config_from_env()
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), config.source_uri)
    return config


def test_nightly_run_publishes_k_unseen_items_for_every_user(seeded):
    # users with fewer than 6 events get the popularity fallback (min_history)
    outcome = airflow_adapter.run_dag("recsys_nightly", {**TINY, "min_history": 6})
    assert outcome["state"] == "success", outcome["tasks"]
    assert outcome["tasks"]["publish"] == "success"
    assert sum(1 for t in outcome["tasks"] if t.startswith("generate[")) == 3

    recs = read_view(seeded)
    assert recs["run_id"].nunique() == 1 and recs["run_id"].iloc[0] == outcome["run_id"]
    seqs = build_sequences(read_interactions(seeded.source_uri))
    assert set(recs["user_id"]) == set(seqs.user_ids)
    per_user = recs.groupby("user_id")["rank"].apply(sorted)
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in per_user)
    history = read_interactions(seeded.source_uri).groupby("user_id")["item_id"].apply(set)
    seen = [item in history[user] for user, item in zip(recs["user_id"], recs["item_id"], strict=True)]
    assert not any(seen)

    # every row says why it is there and what its score means (scoring/explain.py)
    model, popular = recs[recs["strategy"] == "model"], recs[recs["strategy"] == "popularity"]
    assert len(model) and len(popular)
    assert set(model["reason"]) <= {"history", "new_item"} and set(popular["reason"]) == {"popular"}
    assert all(b in history[u] for u, b in zip(model["user_id"], model["because_item_id"], strict=True))
    assert model["because_score"].between(-1.0001, 1.0001).all() and popular["because_item_id"].isna().all()
    assert recs["probability"].between(0, 1).all()
    by_rank = recs.sort_values(["user_id", "rank"]).groupby("user_id")["probability"]
    assert by_rank.apply(lambda p: bool((p.diff().dropna() <= 1e-12).all())).all()  # non-increasing with rank
    from recsys_tasks.reader import Reader

    with Reader(seeded.db_url) as reader:
        assert {r["reason"] for r in reader.recommend("someone-new")} == {"trending"}  # the fallback list

    record = run_record(seeded, outcome["run_id"])
    assert record["status"] == "published" and record["rows_written"] == len(recs)
    engine = results_db.make_engine(seeded.db_url)
    timings = {t["stage"]: t for t in results_db.stage_timings(engine, results_db.Tables.from_config(seeded), outcome["run_id"])}
    engine.dispose()
    assert {"extract", "validate", "finetune", "generate[0]", "generate[2]", "publish"} <= set(timings)
    assert all(t["status"] == "success" and t["seconds"] >= 0 for t in timings.values())
    assert record["metrics"]["model"]["NDCG@10"] > record["metrics"]["popularity"]["NDCG@10"]


def test_a_cleared_run_replayed_a_day_later_reads_and_publishes_what_its_date_saw(seeded):
    from recsys_tasks.pipeline.ingest import read_source
    from recsys_tasks.storage import layout
    from recsys_tasks.storage.artifacts import ArtifactStore

    night = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # the synthetic log ends early in March
    first = airflow_adapter.run_dag("recsys_nightly", TINY, logical_date=night)
    assert first["state"] == "success" and first["tasks"]["publish"] == "success"
    store = ArtifactStore(seeded.artifact_root)
    extracted = store.read_json(layout.run_file(first["run_id"], layout.EXTRACT))
    assert extracted["as_of"] == night.isoformat()
    columns = ["user_id", "rank", "item_id", "score", "reason", "because_item_id"]
    lists = read_view(seeded)[columns].sort_values(["user_id", "rank"]).reset_index(drop=True)

    # a day later, new events have arrived (for 40 users, on an item none of them had)
    log = read_interactions(seeded.source_uri)
    users = log["user_id"].drop_duplicates().head(40)
    later = pd.DataFrame({"user_id": users, "item_id": "brand-new-item", "ts": pd.Timestamp(night) + pd.Timedelta(days=1),
                          "event_type": "interaction", "value": 1.0})
    write_interactions(pd.concat([log, later], ignore_index=True), seeded.source_uri)
    assert len(read_source(seeded)) == len(log) + 40  # a run as of now reads them

    # clearing the night and running it again: the same rows, the same lists
    replay = airflow_adapter.run_dag("recsys_nightly", TINY, logical_date=night)
    assert replay["run_id"] == first["run_id"] and replay["state"] == "success"
    assert store.read_json(layout.run_file(first["run_id"], layout.EXTRACT)) == extracted
    again = read_view(seeded)[columns].sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(again, lists)
    assert run_record(seeded, replay["run_id"])["status"] == "published"


def test_bad_data_fails_validation_and_keeps_the_published_run(seeded, recsys_home):
    first = airflow_adapter.run_dag("recsys_nightly", TINY)
    before = read_view(seeded)

    bad = read_interactions(seeded.source_uri)
    bad.loc[:20, "ts"] = pd.Timestamp("2100-01-01", tz="UTC")
    bad_uri = f"sqlite:///{recsys_home / 'bad.db'}?table=interactions"
    write_interactions(bad, bad_uri)
    second = airflow_adapter.run_dag("recsys_nightly", {**TINY, "source_uri": bad_uri})

    assert second["state"] == "failed"
    assert second["tasks"]["validate"] == "failed"
    assert second["tasks"]["publish"] == "upstream_failed"
    after = read_view(seeded)
    assert after.equals(before) and set(after["run_id"]) == {first["run_id"]}
    record = run_record(seeded, second["run_id"])
    assert record["status"] == "failed_validation"
    assert "expect_column_values_to_be_between on ts" in record["message"]
    engine = sa.create_engine(seeded.db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(DISTINCT run_id) FROM recommendations").scalar() == 1
    engine.dispose()


def test_a_regressed_candidate_is_rejected_and_a_good_one_replaces_production(seeded):
    from recsys_tasks.storage import registry
    from recsys_tasks.storage.artifacts import ArtifactStore

    store = ArtifactStore(seeded.artifact_root)
    first = airflow_adapter.run_dag("recsys_nightly", TINY)
    published = read_view(seeded)
    v1 = registry.production_version(store)
    assert v1 and set(published["model_version"]) == {v1}
    lineage = registry.describe(store, v1)  # what the model was trained on, and the data check it passed
    assert lineage["run_id"] == first["run_id"] and lineage["data"]["rows_extracted"] > 0
    assert lineage["data"]["first_event"] < lineage["data"]["last_event"]
    # which code trained it: the same version and commit that `recsys --version` prints
    printed = subprocess.run([sys.executable, "-m", "recsys_tasks.ops.cli", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert printed[0] == "recsys" and lineage["code_version"] == printed[1] and "+" in printed[1]
    assert lineage["transition_prior"]["weight"] in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)  # chosen on validation
    assert store.read_json(f"models/{v1}/validation.json")["passed"] is True

    # an untrained model, shipped alone: with the transition prior (chosen on validation, up to
    # half the score) even an untrained model's lists come close to production's on this tiny log
    regressed = airflow_adapter.run_dag("recsys_nightly", {**TINY, "epochs": 0, "transition_prior": False})
    assert regressed["state"] == "success"  # a rejection is a decision, not a crash
    assert regressed["tasks"]["gate"] == "success" and regressed["tasks"]["publish"] == "skipped"
    record = run_record(seeded, regressed["run_id"])
    assert record["status"] == "rejected" and "production" in record["message"]
    assert read_view(seeded).equals(published) and registry.production_version(store) == v1

    better = airflow_adapter.run_dag("recsys_nightly", {**TINY, "epochs": 10})
    assert better["tasks"]["publish"] == "success", run_record(seeded, better["run_id"])["message"]
    v3 = registry.production_version(store)
    assert v3 != v1 and set(read_view(seeded)["model_version"]) == {v3}
    metrics = run_record(seeded, better["run_id"])["metrics"]
    assert metrics["production"]["NDCG@10"] > 0
    assert metrics["published"]["users"] == 300 and 0.0 <= metrics["published"]["churn@5"] <= 1.0
    published = read_view(seeded)

    # a candidate that would replace more of what users see than allowed is refused too
    churned = airflow_adapter.run_dag("recsys_nightly", {**TINY, "epochs": 8, "seed": 5, "gate_max_churn": 0.0})
    assert churned["tasks"]["publish"] == "skipped"
    record = run_record(seeded, churned["run_id"])
    assert record["status"] == "rejected" and "> bound 0.000" in record["message"], record["message"]
    assert read_view(seeded).equals(published) and registry.production_version(store) == v3
    assert store.exists(f"runs/{run_key(better['run_id'])}/report/evaluation.png")

    assert registry.rollback(store)["model_version"] == v1
    regenerated = airflow_adapter.run_dag("recsys_regenerate", {"top_k": 5})
    assert regenerated["state"] == "success", regenerated["tasks"]
    now = read_view(seeded)
    assert set(now["model_version"]) == {v1} and set(now["run_id"]) == {regenerated["run_id"]} != {first["run_id"]}


def test_fine_tuning_can_start_from_the_production_model(seeded):
    from recsys_tasks.storage import registry
    from recsys_tasks.storage.artifacts import ArtifactStore

    store = ArtifactStore(seeded.artifact_root)
    airflow_adapter.run_dag("recsys_nightly", TINY)
    v1 = registry.production_version(store)
    judged = registry.judged_version(store, v1)  # production is a refit; it is judged by its twin
    # no training at all: the candidate is production's twin itself, so it scores exactly as production
    second = airflow_adapter.run_dag("recsys_nightly", {**TINY, "epochs": 0, "warm_start_from": "production"})
    record = run_record(seeded, second["run_id"])
    assert registry.describe(store, record["model_version"])["encoder"] == f"models/{judged}/model.pt"
    assert record["metrics"]["model"]["NDCG@10"] == record["metrics"]["production"]["NDCG@10"]


def test_with_refit_the_shipped_model_is_the_judged_candidate_refitted_on_every_event(seeded):
    from recsys_tasks.storage import layout, registry
    from recsys_tasks.storage.artifacts import ArtifactStore

    store = ArtifactStore(seeded.artifact_root)
    run = airflow_adapter.run_dag("recsys_nightly", {**TINY, "refit": True})
    shipped, candidate = registry.production_version(store), layout.model_version_for(run["run_id"])
    assert shipped == layout.refit_version(candidate) and set(read_view(seeded)["model_version"]) == {shipped}
    lineage = registry.describe(store, shipped)
    assert lineage["refit_of"] == candidate and lineage["trained_on"] == "every event, the held-out ones too"
    history = store.read_json(layout.model_file(shipped, layout.LINEAGE))["history"]
    assert len(history) == registry.describe(store, candidate)["best_epoch"] and all("val" not in h for h in history)
    assert lineage["metrics"]["judged_as"] == candidate  # the gate's figures are the candidate's
    assert f"shipping {shipped}" in run_record(seeded, run["run_id"])["message"]
    # the night's budget (night_minutes, 60 by default) gave the first pretraining, fine-tuning and the refit their shares
    plans = {p["stage"]: p for p in store.read_json(layout.run_file(run["run_id"], layout.NIGHT))["plans"]}
    assert set(plans) == {"pretrain", "finetune", "refit"} and all(p["night_minutes"] == 60.0 for p in plans.values())
    assert plans["finetune"]["spent_s"] > 0 and plans["refit"]["spent_s"] > plans["finetune"]["spent_s"]

    # the next night judges production by, and warm-starts from, the twin that never saw the
    # events tonight holds out (the refit trained on the test events of users with nothing new)
    second = airflow_adapter.run_dag("recsys_nightly", {**TINY, "refit": True, "warm_start_from": "production"})
    record = run_record(seeded, second["run_id"])
    assert record["metrics"]["production_version"] == shipped
    assert record["metrics"]["production_judged_as"] == candidate
    assert f"production {shipped} (judged as {candidate})" in record["message"]
    assert registry.describe(store, layout.model_version_for(second["run_id"]))["encoder"] == f"models/{candidate}/model.pt"

