"""Sequences that repeat items: the benchmark keeps them as the file gives them, a repeated
target is a miss (history items are never ranked), and `repeats=allow` keeps re-consumption in
the sequences and may recommend a seen item again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from recsys_tasks import pipeline as stages
from recsys_tasks.config import config_from_env, with_params
from recsys_tasks.data.prepare import Sequences, build_sequences, leave_one_out
from recsys_tasks.data.sources import read_interactions
from recsys_tasks.scoring.evaluation import popularity_scorer, target_ranks
from recsys_tasks.scoring.inference import top_k_for_users

# users 1 and 3 end on an item they had before; user 3 repeats one twice in a row
LINES = ["1 5 3 7 5", "2 1 2 3 4", "3 2 2 6 2", "4 6 1 3 8", "5 4 5 6 7 9"]


def as_given(tmp_path) -> Sequences:
    path = tmp_path / "Repeats.txt"
    path.write_text("\n".join(LINES) + "\n")
    return build_sequences(read_interactions(str(path)), keep="all")


def test_the_benchmarks_test_targets_are_the_files_last_items(tmp_path):
    seqs = as_given(tmp_path)
    split = leave_one_out(seqs, min_length=3)
    assert len(seqs.items) == sum(len(line.split()) - 1 for line in LINES)  # nothing dropped
    targets = {seqs.user_ids[u]: seqs.item_ids[seqs.items[split.train_end[u] + 1] - 1] for u in split.eval_users}
    assert targets == {line.split()[0]: line.split()[-1] for line in LINES}


def test_a_repeated_target_is_a_miss_even_for_a_scorer_that_puts_it_first(tmp_path):
    seqs = as_given(tmp_path)
    split = leave_one_out(seqs, min_length=3)
    test_end = split.train_end + 1

    def oracle(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        scores = torch.zeros(len(users), seqs.n_items + 1)
        scores[torch.arange(len(users)), torch.as_tensor(seqs.items[ends])] = 1e9  # the target, first
        return scores

    ranks, _ = target_ranks(oracle, seqs, split.eval_users, test_end)
    by_user = dict(zip([seqs.user_ids[u] for u in split.eval_users], ranks, strict=True))
    assert by_user["2"] == by_user["4"] == by_user["5"] == 0
    assert by_user["1"] >= seqs.n_items and by_user["3"] >= seqs.n_items  # seen before: excluded, never ranked


def test_repeats_allow_learns_and_recommends_a_re_consumed_item(recsys_home):
    frame = pd.DataFrame({
        "user_id": ["u"] * 6 + ["v"] * 3 + ["w"] * 3,
        "item_id": ["a", "b", "a", "c", "a", "a", "a", "b", "c", "a", "c", "d"],
        "ts": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(range(12), unit="h"),
        "event_type": "view", "value": 1.0,
    })
    config = config_from_env()
    run = stages.RunContext("manual__repeats", with_params(config, {"repeats": "allow"}))
    key = run.path("interactions.parquet")
    run.store.write_frame(key, frame)
    seqs = Sequences.from_bytes(run.store.read_bytes(stages.prepare(run, key)["sequences"]))
    assert len(seqs.items) == len(frame)  # re-consumption stays in the sequences
    counts = np.bincount(seqs.items, minlength=seqs.n_items + 1).astype(np.float64)
    users = np.arange(seqs.n_users)
    allowed = top_k_for_users(popularity_scorer(counts), seqs, users, k=2, min_history=0, exclude_history=False)
    excluded = top_k_for_users(popularity_scorer(counts), seqs, users, k=2, min_history=0)
    assert "a" in set(allowed.loc[allowed["user_id"] == "u", "item_id"])  # u's favourite, again
    assert "a" not in set(excluded.loc[excluded["user_id"] == "u", "item_id"])
    dedup = stages.RunContext("manual__dedup", config)
    dedup.store.write_frame(dedup.path("interactions.parquet"), frame)
    assert stages.prepare(dedup, dedup.path("interactions.parquet"))["events"] == 9  # one event per (user, item)
