import numpy as np
import pandas as pd
import pytest

from recsys_tasks.data.sources import read_interactions, to_canonical, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.data.validation import validate_interactions
from recsys_tasks.errors import SourceError

GOOD = generate_interactions(SyntheticSpec(users=50, items=40, topics=4, seed=1))


def failures(frame):
    report = validate_interactions(frame)
    return report, {(f["expectation"], f["column"]) for f in report.failures}


def test_generated_data_passes():
    report, failed = failures(GOOD)
    assert report.passed, report.summary()


def test_null_user_is_named_with_column_and_count():
    bad = GOOD.copy()
    bad.loc[3, "user_id"] = None
    report, failed = failures(bad)
    assert ("expect_column_values_to_not_be_null", "user_id") in failed
    assert "user_id: 1 rows" in report.summary()


def test_future_timestamps_are_refused():
    bad = GOOD.copy()
    bad.loc[0, "ts"] = pd.Timestamp("2100-01-01", tz="UTC")
    report, failed = failures(bad)
    assert ("expect_column_values_to_be_between", "ts") in failed
    assert "2100-01-01" in report.summary()


def test_duplicate_flood_is_refused():
    bad = pd.concat([GOOD, GOOD.head(100)], ignore_index=True)
    _, failed = failures(bad)
    assert ("expect_compound_columns_to_be_unique", "user_id,item_id,ts,event_type") in failed


def test_text_timestamps_are_quoted_from_the_source():
    raw = GOOD.assign(ts=GOOD["ts"].astype(str))
    raw.loc[5, "ts"] = "yesterday"
    report, failed = failures(to_canonical(raw, "test"))
    assert ("expect_column_values_to_not_be_null", "ts") in failed
    assert "yesterday" in report.summary()


def test_one_user_log_is_refused():
    _, failed = failures(GOOD[GOOD["user_id"] == GOOD["user_id"].iloc[0]])
    assert ("expect_column_unique_value_count_to_be_between", "user_id") in failed


def test_missing_column_is_a_source_error(tmp_path):
    path = tmp_path / "log.csv"
    GOOD.drop(columns=["item_id"]).to_csv(path, index=False)
    with pytest.raises(SourceError, match="missing column"):
        read_interactions(str(path))


@pytest.mark.parametrize("target", ["log.csv", "log.parquet", "sqlite:///{tmp}/log.db?table=events"])
def test_sources_round_trip(tmp_path, target):
    uri = target.format(tmp=tmp_path) if "sqlite" in target else str(tmp_path / target)
    write_interactions(GOOD, uri)
    back = read_interactions(uri)
    assert len(back) == len(GOOD)
    assert back["ts"].equals(GOOD["ts"].reset_index(drop=True)) or (back["ts"] == GOOD["ts"]).all()
    assert validate_interactions(back).passed


def test_vocabulary_keeps_known_tokens_and_appends_new_items():
    from recsys_tasks.data.prepare import build_sequences

    first = build_sequences(GOOD)
    later = GOOD.assign(item_id=GOOD["item_id"].where(GOOD.index % 5 != 0, "brand-new"))
    second = build_sequences(later, known_items=first.item_ids)
    assert second.item_ids[: first.n_items] == first.item_ids
    assert second.item_ids[first.n_items :] == ["brand-new"]


def test_k_core_and_dedup_policy():
    from recsys_tasks.data.prepare import build_sequences

    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "c", "c"],
            "item_id": ["x", "y", "x", "x", "x", "y"],
            "ts": pd.to_datetime([1, 2, 3, 1, 1, 2], unit="s", utc=True),
        }
    )
    first = build_sequences(frame)
    assert [first.item_ids[t - 1] for t in first.sequence(0)] == ["x", "y"]
    last = build_sequences(frame, keep="last")
    assert [last.item_ids[t - 1] for t in last.sequence(0)] == ["y", "x"]
    core = build_sequences(frame, min_user_events=2, min_item_events=2)
    assert core.user_ids == ["a", "c"]


def test_time_based_split_evaluates_only_recent_users():
    from recsys_tasks.data.prepare import build_sequences, leave_one_out

    seqs = build_sequences(GOOD)
    everyone = leave_one_out(seqs)
    recent = leave_one_out(seqs, time_quantile=0.8)
    assert 0 < len(recent.eval_users) < len(everyone.eval_users)
    cutoff = np.quantile(seqs.last_ts, 0.8)
    assert (seqs.last_ts[recent.eval_users] >= cutoff).all()
    assert (seqs.last_ts[np.setdiff1d(everyone.eval_users, recent.eval_users)] < cutoff).all()
