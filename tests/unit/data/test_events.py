"""What events mean: the strongest of repeated events is kept, low ratings are not positives."""

import pandas as pd

from recsys_tasks.config import config_from_env, parse_event_weights, with_params
from recsys_tasks.data.prepare import Sequences, build_sequences
from recsys_tasks.pipeline import RunContext, prepare


def events(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "event_type", "value"])
    return frame.assign(ts=pd.to_datetime(frame["ts"], unit="s", utc=True))


def items_of(seqs, user):
    u = seqs.user_ids.index(user)
    return [seqs.item_ids[t - 1] for t in seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]]]


def test_a_purchase_after_a_view_of_the_same_item_is_kept_at_the_purchase():
    log = events([
        ("u", "a", 1, "view", 1.0), ("u", "b", 2, "view", 1.0), ("u", "c", 3, "view", 1.0),
        ("u", "a", 4, "purchase", 1.0),  # bought a after looking at b and c
    ])
    weights = parse_event_weights("purchase=3,add_to_cart=2")
    strongest = build_sequences(log, keep="strongest", event_weights=weights)
    assert items_of(strongest, "u") == ["b", "c", "a"]  # the purchase, at its own time, is the last event
    assert strongest.weights.tolist() == [1.0, 1.0, 3.0]  # and it weighs as a purchase in training
    assert Sequences.from_bytes(strongest.to_bytes()).weights.tolist() == [1.0, 1.0, 3.0]
    assert build_sequences(log, keep="strongest", event_weights={}).weights is None  # nothing weighs other than 1
    assert items_of(build_sequences(log, keep="first"), "u") == ["a", "b", "c"]  # the old behaviour threw it away


def test_ties_in_weight_keep_the_higher_rating_then_the_earlier_event():
    log = events([("u", "a", 1, "rating", 2.0), ("u", "b", 2, "rating", 4.0), ("u", "a", 3, "rating", 5.0),
                  ("v", "a", 1, "view", 1.0), ("v", "b", 2, "view", 1.0), ("v", "a", 3, "view", 1.0)])
    seqs = build_sequences(log, keep="strongest", event_weights={})
    assert items_of(seqs, "u") == ["b", "a"]  # the 5-star a, not the 2-star one
    assert items_of(seqs, "v") == ["a", "b"]  # equal events: the first is kept


def test_prepare_drops_ratings_below_min_value_and_keeps_the_strongest(recsys_home):
    config = with_params(config_from_env(), {"min_value": 3})
    run = RunContext("run-events", config)
    log = events([("u", f"i{k}", k, "rating", float(1 + k % 5)) for k in range(20)]
                 + [("w", "i1", 1, "view", None), ("w", "i2", 2, "view", None), ("w", "i3", 3, "view", None)])
    run.store.write_frame(run.path("interactions.parquet"), log)
    summary = prepare(run, run.path("interactions.parquet"))
    seqs = Sequences.from_bytes(run.store.read_bytes(summary["sequences"]))
    kept = items_of(seqs, "u")
    assert kept == [f"i{k}" for k in range(20) if 1 + k % 5 >= 3]  # 1- and 2-star ratings are not positives
    assert items_of(seqs, "w") == ["i1", "i2", "i3"]  # events without a value stay positives
