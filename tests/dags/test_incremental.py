"""A night that makes only the lists that can have changed (`lists=changed`), through the
nightly DAG for real: the others are carried over, exactly, inside the same atomic publish."""

import threading
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers import read_view, run_record
from recsys_tasks import airflow_adapter
from recsys_tasks import db as results_db
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions

TINY = {"epochs": 4, "pretrain_epochs": 1, "top_k": 5, "num_shards": 2, "gate_min_lift": -0.5, "lists": "changed"}
LIST = ["user_id", "rank", "item_id", "model_version", "strategy", "variant", "reason", "because_item_id", "generated_at"]


@pytest.fixture()
def seeded(recsys_home, airflow_db):
    config = config_from_env()
    write_interactions(generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=3)), config.source_uri)
    return config


def lists_of(frame: pd.DataFrame, users: set[str]) -> pd.DataFrame:
    part = frame[frame["user_id"].isin(users)][LIST].astype(str)
    return part.sort_values(["user_id", "rank"]).reset_index(drop=True)


def test_a_changed_night_keeps_unchanged_lists_exactly_and_remakes_the_rest(seeded, caplog):
    first = airflow_adapter.run_dag("recsys_nightly", TINY)  # nothing published yet: everyone's list is made
    assert first["state"] == "success" and run_record(seeded, first["run_id"])["status"] == "published"
    before = read_view(seeded)

    # a day of new events for 30 users, and an item many lists hold taken off the shelf
    log = read_interactions(seeded.source_uri)
    movers = sorted(log["user_id"].unique())[:30]
    day = log.groupby("user_id").tail(1).set_index("user_id").loc[movers].reset_index()
    day = day.assign(ts=log["ts"].max() + timedelta(hours=6), item_id=[f"i{n % 120}" for n in range(30)])
    write_interactions(pd.concat([log, day], ignore_index=True), seeded.source_uri)
    gone = before.loc[before["strategy"] == "model", "item_id"].value_counts().index[0]
    holders = set(before.loc[before["item_id"] == gone, "user_id"])

    engine = results_db.make_engine(seeded.db_url)
    tables = results_db.Tables.from_config(seeded)
    seen, stop = [], threading.Event()

    def reader():  # what an app sees while the night publishes: one run, every user, always
        while not stop.is_set():
            with engine.connect() as conn:
                seen.append(tuple(conn.execute(sa.text(
                    f"SELECT COUNT(DISTINCT run_id), COUNT(DISTINCT user_id) FROM {tables.view}")).one()))

    poller = threading.Thread(target=reader)
    poller.start()
    try:
        second = airflow_adapter.run_dag("recsys_nightly", {**TINY, "exclude_items": gone, "gate_max_churn": 1.0,
                                                            "gate_max_regression": 1.0})
    finally:
        stop.set()
        poller.join(30)
    assert second["state"] == "success", second["tasks"]
    # warm (from production): it trained on the 30 users with new events and a replay sample of the rest
    trained = [r.getMessage() for r in caplog.records if "training on" in r.getMessage()]
    assert trained and trained[-1].startswith("lists=changed: training on 30 users with new events"), trained
    record = run_record(seeded, second["run_id"])
    assert record["status"] == "published", record["message"]
    after = read_view(seeded)
    users = set(before["user_id"])
    assert set(after["run_id"]) == {second["run_id"]} and set(after["user_id"]) == users  # one complete set
    assert record["users"] == len(users) and record["rows_written"] == len(after)
    assert len(seen) > 3 and set(seen) <= {(1, len(users))}, set(seen)

    kept = users - set(movers) - holders
    assert len(kept) > 100
    pd.testing.assert_frame_equal(lists_of(after, kept), lists_of(before, kept))  # exactly, model version and time too
    remade = lists_of(after, set(movers) | holders)
    shipped = record["model_version"]
    assert set(remade["model_version"]) == {shipped} and gone not in set(after["item_id"])
    assert (pd.to_datetime(remade["generated_at"]) > pd.to_datetime(before["generated_at"]).max()).all()
    engine.dispose()
