"""A corpus of bad interaction logs: each is refused by a real DAG run with a specific
message, and the published recommendations stay exactly as they were."""

import pandas as pd
import pytest

from helpers import read_view, run_record
from recsys_tasks import airflow_adapter
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.ops import cli

TINY = {"epochs": 4, "pretrain_epochs": 1, "top_k": 5, "num_shards": 2, "gate_min_lift": -0.5}


def _csv(frame, path):
    frame.to_csv(path, index=False)


def nulls(good, path):
    bad = good.copy()
    bad.loc[::7, "user_id"] = None
    _csv(bad, path)


def text_timestamps(good, path):
    bad = good.assign(ts=good["ts"].astype(str))
    bad.loc[::9, "ts"] = "yesterday"
    _csv(bad, path)


def future_timestamps(good, path):
    bad = good.copy()
    bad.loc[::11, "ts"] = pd.Timestamp("2100-01-01", tz="UTC")
    _csv(bad, path)


def ancient_timestamps(good, path):
    bad = good.copy()
    bad.loc[::11, "ts"] = pd.Timestamp("1970-01-01 00:00:05", tz="UTC")  # seconds read as a date
    _csv(bad, path)


def duplicate_flood(good, path):
    _csv(pd.concat([good, good.sample(frac=0.3, random_state=0)], ignore_index=True), path)


def empty_log(good, path):
    _csv(good.head(0), path)


def single_user(good, path):
    _csv(good[good["user_id"] == good["user_id"].iloc[0]], path)


def unknown_event_types(good, path):
    _csv(good.assign(event_type="hover"), path)


def blank_ids(good, path):
    bad = good.copy()
    bad.loc[::13, "item_id"] = "   "
    _csv(bad, path)


def volume_drop(good, path):
    _csv(good.sample(frac=0.1, random_state=0), path)


def popularity_drift(good, path):
    _csv(good.assign(item_id="new-" + good["item_id"]), path)


def ragged_csv(good, path):
    text = good.head(50).to_csv(index=False) + "u1,i1,2026-01-01,view,1.0,surprise,field\n"
    path.write_text(text)


def missing_column(good, path):
    _csv(good.drop(columns=["item_id"]), path)


def binary_garbage(good, path):
    path.write_bytes(bytes(range(256)) * 40)


DRIFT = (volume_drop, popularity_drift)
CORPUS = [
    (nulls, "expect_column_values_to_not_be_null on user_id"),
    (text_timestamps, "yesterday"),
    (future_timestamps, "expect_column_values_to_be_between on ts"),
    (ancient_timestamps, "1970-01-01"),
    (duplicate_flood, "expect_compound_columns_to_be_unique"),
    (empty_log, "expect_table_row_count_to_be_between"),
    (single_user, "expect_column_unique_value_count_to_be_between on user_id"),
    (unknown_event_types, "expect_column_values_to_be_in_set on event_type"),
    (blank_ids, "expect_column_values_to_match_regex on item_id"),
    (volume_drop, "volume change vs the last good run of this source"),
    (popularity_drift, "item popularity drift vs the last good run of this source"),
    (ragged_csv, "ragged"),
    (missing_column, "missing column(s) item_id"),
    (binary_garbage, "binary content"),
]


@pytest.fixture(scope="module")
def published(tmp_path_factory, airflow_db):
    """One good run published first; every bad run below must leave it untouched."""
    home = tmp_path_factory.mktemp("bad-inputs")
    patch = pytest.MonkeyPatch()
    patch.setenv("RECSYS_HOME", str(home))
    config = config_from_env()
    good = generate_interactions(SyntheticSpec(users=300, items=120, topics=6, seed=5))
    write_interactions(good, config.source_uri)
    outcome = airflow_adapter.run_dag("recsys_nightly", TINY)
    assert outcome["state"] == "success", outcome["tasks"]
    yield config, home, read_interactions(config.source_uri)
    patch.undo()


@pytest.mark.parametrize("make_bad, message", CORPUS, ids=[m.__name__ for m, _ in CORPUS])
def test_bad_input_is_refused_and_nothing_is_published(published, make_bad, message):
    config, home, good = published
    before = read_view(config)
    path = home / f"{make_bad.__name__}.csv"
    make_bad(good, path)

    if make_bad in DRIFT:  # drift is judged against the last good log of the same source
        write_interactions(read_interactions(str(path)), config.source_uri)
        try:
            outcome = airflow_adapter.run_dag("recsys_nightly", TINY)
        finally:
            write_interactions(good, config.source_uri)
    else:
        outcome = airflow_adapter.run_dag("recsys_nightly", {**TINY, "source_uri": str(path)})

    assert outcome["state"] == "failed"
    failed = {t for t, s in outcome["tasks"].items() if s == "failed"}
    assert failed <= {"extract", "validate"} and failed, outcome["tasks"]
    assert outcome["tasks"]["publish"] == "upstream_failed"
    record = run_record(config, outcome["run_id"])
    assert record["status"] in {"failed_validation", "failed"}
    assert message in record["message"], record["message"]
    if make_bad in DRIFT:  # the message says what it compared with and what it allowed
        assert "the last good run of this source: " in record["message"] and "allowed: " in record["message"]
    assert read_view(config).equals(before)


def test_validate_command_exit_codes(published, capsys):
    config, home, good = published
    ok = home / "ok.csv"
    good.to_csv(ok, index=False)
    assert cli.main(["validate", "--source", str(ok)]) == 0
    assert "new source: no history to compare" in capsys.readouterr().out  # another file: not judged by this one's
    bad = home / "cli-bad.csv"
    future_timestamps(good, bad)
    assert cli.main(["validate", "--source", str(bad)]) == 2
    assert "expect_column_values_to_be_between on ts" in capsys.readouterr().out
    assert cli.main(["validate", "--source", str(home / "missing.csv")]) == 2
