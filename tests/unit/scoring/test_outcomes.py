"""Outcome tracking: the published lists scored against what users did next, and the holdout."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recsys_tasks import airflow_adapter
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.scoring import outcomes

TINY = {"epochs": 3, "pretrain_epochs": 1, "top_k": 10, "num_shards": 2, "holdout_fraction": 0.2, "gate_min_lift": -0.5}


def test_hit_rate_ndcg_and_weighted_hits_are_what_a_hand_count_gives():
    lists = pd.DataFrame({
        "user_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
        "rank": [1, 2, 3] * 3,
        "item_id": ["x", "y", "z", "x", "y", "z", "p", "q", "r"],
        "model_version": "v1", "strategy": "model", "variant": ["model"] * 6 + ["control"] * 3,
    })
    events = pd.DataFrame({  # a: y viewed then bought; b: nothing listed; c: r; d: no list at all
        "user_id": ["a", "a", "a", "b", "c", "d"],
        "item_id": ["y", "y", "w", "k", "r", "x"],
        "event_type": ["view", "purchase", "view", "view", "add_to_cart", "purchase"],
    })
    rows = outcomes.score_lists(lists, events, {"purchase": 3, "add_to_cart": 2}, catalogue_items=10).set_index(
        ["strategy", "variant"]
    )
    model = rows.loc[("model", "model")]
    assert (model["active_users"], model["hit_users"], model["hit_rate"]) == (2, 1, 0.5)
    # a: relevant {y, w}, y at rank 2: DCG 1/log2(3), ideal 1 + 1/log2(3); b: 0
    assert model["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)
    assert model["weighted_hits"] == 3.0  # the purchase, not the view, of y
    assert model["coverage"] == pytest.approx(0.3)
    control = rows.loc[("model", "control")]
    assert (control["active_users"], control["hit_users"], control["weighted_hits"]) == (1, 1, 2.0)
    assert control["ndcg"] == pytest.approx(1 / math.log2(4))  # r at rank 3, one relevant item
    overall = rows.loc[("all", "all")]
    assert (overall["active_users"], overall["hit_users"], overall["coverage"]) == (3, 2, 0.6)


def test_uplift_interval_covers_the_ratio_and_shrinks_with_more_users():
    small = outcomes.relative_uplift(30, 100, 20, 100)
    large = outcomes.relative_uplift(3000, 10000, 2000, 10000)
    assert small[0] == pytest.approx(0.5) and large[0] == pytest.approx(0.5)
    assert small[1] < 0.5 < small[2] and large[1] < 0.5 < large[2]
    assert large[2] - large[1] < (small[2] - small[1]) / 5
    assert small[1] < 0 < large[1]  # 100 users per arm cannot tell; 10,000 can
    assert outcomes.relative_uplift(5, 100, 0, 100) is None


def test_the_holdout_is_a_stable_hashed_share_of_users():
    users = [f"user-{i}" for i in range(50_000)]
    variant = outcomes.holdout_variant(users, 0.2)
    assert abs((variant == "control").mean() - 0.2) < 0.02
    assert (outcomes.holdout_variant(users, 0.2) == variant).all()  # same users, same variant, every run
    shuffled = np.random.default_rng(0).permutation(len(users))
    assert (outcomes.holdout_variant([users[i] for i in shuffled], 0.2) == variant[shuffled]).all()
    wider = outcomes.holdout_variant(users, 0.3)
    assert (wider[variant == "control"] == "control").all()  # a larger holdout only adds users
    assert (outcomes.holdout_variant(users, 0.0) == "model").all()


@pytest.fixture()
def two_nights(recsys_home, airflow_db, postgres_url, monkeypatch):
    """The log up to a cut-off, then the whole log: the second night sees the events after
    the first night's data. Results on PostgreSQL."""
    monkeypatch.setenv("RECSYS_DB_URL", postgres_url)
    config = config_from_env()
    log = generate_interactions(SyntheticSpec(users=2000, items=150, topics=6, seed=5, days=40))
    cutoff = log["ts"].quantile(0.85)
    write_interactions(log[log["ts"] <= cutoff], config.source_uri)
    first = airflow_adapter.run_dag("recsys_nightly", TINY)
    assert first["state"] == "success", first["tasks"]
    assert first["tasks"]["track_outcomes"] == "success"  # nothing published before: nothing scored
    write_interactions(log, config.source_uri)
    second = airflow_adapter.run_dag("recsys_nightly", TINY)
    assert second["state"] == "success", second["tasks"]
    return config, log, first["run_id"], second["run_id"]


def test_two_nights_outcomes_match_a_hand_count_and_the_holdout_is_stable(two_nights):
    config, log, first, second = two_nights
    engine = sa.create_engine(config.db_url)
    with engine.connect() as conn:
        published = pd.read_sql(sa.text("SELECT user_id, item_id, variant FROM recommendations WHERE run_id = :r"),
                                conn, params={"r": first})
        republished = pd.read_sql(sa.text("SELECT DISTINCT user_id, variant FROM recommendations WHERE run_id = :r"),
                                  conn, params={"r": second})
        stored = pd.read_sql(sa.text("SELECT * FROM recsys_outcomes WHERE run_id = :r"), conn, params={"r": second})
        # the reader role reads the outcomes
        conn.exec_driver_sql("SET ROLE recsys_reader")
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM recsys_outcomes").scalar() == len(stored)
        conn.rollback()
    engine.dispose()

    # the holdout: 20% +- 2% of users, and the same users in both runs
    per_user = published.drop_duplicates("user_id").set_index("user_id")["variant"]
    assert abs((per_user == "control").mean() - 0.2) <= 0.02
    again = republished.set_index("user_id")["variant"].reindex(per_user.index)
    assert (again == per_user).all()

    # a hand count of the same rows: new events after night one's data, on items new to the user
    cutoff = log["ts"].quantile(0.85)
    before = log[log["ts"] <= cutoff]
    after = log[log["ts"] > cutoff]
    seen = set(zip(before["user_id"], before["item_id"], strict=True))
    fresh = after[[(u, i) not in seen for u, i in zip(after["user_id"], after["item_id"], strict=True)]]
    new_items = fresh.groupby("user_id")["item_id"].apply(set)
    lists = published.groupby("user_id")["item_id"].apply(set)
    expected = {}
    for variant in ("model", "control"):
        users = [u for u in new_items.index if u in lists.index and per_user[u] == variant]
        hits = sum(1 for u in users if lists[u] & new_items[u])
        expected[variant] = (len(users), hits)
    rows = stored.set_index(["strategy", "variant"])
    for variant, (active, hits) in expected.items():
        row = rows.loc[("all", variant)]
        assert (row["active_users"], row["hit_users"]) == (active, hits)
        assert row["hit_rate"] == pytest.approx(hits / active)
        assert row["published_run_id"] == first
    assert expected["model"][0] > 100 and expected["control"][0] > 20
    assert len(read_interactions(config.source_uri)) == len(log)  # night two read the whole log
    model_row = rows.loc[("all", "model")]
    assert model_row["uplift_low"] <= model_row["uplift"] <= model_row["uplift_high"]

    # the operator's view of the same rows
    cli = subprocess.run([sys.executable, "-m", "recsys_tasks.ops.cli", "outcomes", "--run-id", second, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    shown = {(r["strategy"], r["variant"]): r for r in json.loads(cli.stdout)}
    assert shown[("all", "model")]["hit_users"] == expected["model"][1]
    table = subprocess.run(
        [sys.executable, "-m", "recsys_tasks.ops.cli", "outcomes"], capture_output=True, text=True, timeout=120
    )
    print(table.stdout)
    assert table.returncode == 0 and "uplift of the model over control" in table.stdout, table.stdout + table.stderr
