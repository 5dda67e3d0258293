"""Every source kind on real files, tables and a real S3 endpoint; wrong formats fail clearly."""

import boto3
import pandas as pd
import pytest

from helpers import DATASETS, S3FaultProxy
from recsys_tasks.data.formats import detect_format
from recsys_tasks.data.sources import SourceOptions, parse_column_map, read_interactions, write_interactions
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.errors import SourceError

LOG = generate_interactions(SyntheticSpec(users=30, items=25, topics=3, seed=2))


def test_movielens_100k(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    frame = read_interactions(str(tmp_path / "u.data"))
    assert frame["user_id"].tolist() == ["196", "186"] and frame["value"].tolist() == [3.0, 3.0]
    assert frame["ts"].iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")


def test_movielens_1m(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    frame = read_interactions(str(tmp_path / "ratings.dat"))
    assert frame["item_id"].tolist() == ["1193", "661"] and (frame["event_type"] == "rating").all()


def test_movielens_csv(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    frame = read_interactions(str(tmp_path / "ratings.csv"))
    assert frame["value"].tolist() == [4.0, 4.5]


def test_sequence_format_positions_become_order(tmp_path):
    (tmp_path / "seq.txt").write_text("1 10 11 12\n2 11 13\n")
    frame = read_interactions(str(tmp_path / "seq.txt"))
    assert frame[frame["user_id"] == "1"].sort_values("ts")["item_id"].tolist() == ["10", "11", "12"]


def test_a_wrong_format_guess_fails_with_the_format_named(tmp_path):
    (tmp_path / "u.data").write_text("user_id,item_id,ts\na,b,2026-01-01\n")
    with pytest.raises(SourceError, match="u.data"):
        read_interactions(str(tmp_path / "u.data"))
    (tmp_path / "log.txt").write_text("user_id,item_id\n")
    with pytest.raises(SourceError, match="expected 'user item item"):
        read_interactions(str(tmp_path / "log.txt"))


def test_binary_garbage_and_ragged_csv_are_readable_errors(tmp_path):
    (tmp_path / "junk.csv").write_bytes(b"\x00\x01\x02garbage" * 50)
    with pytest.raises(SourceError, match="binary content"):
        read_interactions(str(tmp_path / "junk.csv"))
    (tmp_path / "ragged.csv").write_text("user_id,item_id,ts\na,b,2026-01-01\nc,d,2026-01-02,extra,fields\n")
    with pytest.raises(SourceError, match="ragged"):
        read_interactions(str(tmp_path / "ragged.csv"))


def test_daily_partitions_by_glob_and_folder(tmp_path):
    days = dict(list(LOG.groupby(LOG["ts"].dt.date))[:3])
    for day, part in days.items():
        write_interactions(part, str(tmp_path / "parts" / f"{day}.parquet"))
    by_glob = read_interactions(str(tmp_path / "parts" / "*.parquet"))
    by_folder = read_interactions(str(tmp_path / "parts"))
    assert len(by_glob) == len(by_folder) == sum(len(p) for p in days.values())


def test_column_mapping_and_time_window(tmp_path):
    renamed = LOG.rename(columns={"user_id": "uid", "item_id": "product", "ts": "created_at"})
    renamed.to_csv(tmp_path / "events.csv", index=False)
    since = LOG["ts"].quantile(0.5)
    options = SourceOptions(columns=parse_column_map("user_id=uid,item_id=product,ts=created_at"), since=since)
    frame = read_interactions(str(tmp_path / "events.csv"), options)
    assert len(frame) == (LOG["ts"] >= since).sum() and frame["ts"].min() >= since


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_sql_table_with_mapping_and_window(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'src.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    renamed = LOG.rename(columns={"user_id": "uid", "ts": "happened_at"})
    write_interactions(renamed, f"{url}{'&' if '?' in url else '?'}table=events")
    since = LOG["ts"].quantile(0.5)
    options = SourceOptions(columns=parse_column_map("user_id=uid,ts=happened_at"), since=since)
    frame = read_interactions(f"{url}{'&' if '?' in url else '?'}table=events", options)
    assert len(frame) == (LOG["ts"] >= since).sum()
    assert set(frame.columns) == {"user_id", "item_id", "ts", "event_type", "value"}


def test_s3_prefix_of_csv_partitions(s3_endpoint, monkeypatch):
    monkeypatch.setenv("RECSYS_S3_ENDPOINT_URL", s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="logs")
    half = len(LOG) // 2
    for name, part in (("day=1/part.csv", LOG.iloc[:half]), ("day=2/part.csv", LOG.iloc[half:])):
        s3.put_object(Bucket="logs", Key=f"events/{name}", Body=part.to_csv(index=False).encode())
    assert len(read_interactions("s3://logs/events/")) == len(LOG)
    assert len(read_interactions("s3://logs/events/day=1/*.csv")) == half


def test_s3_source_reads_retry_transient_failures(s3_endpoint, monkeypatch):
    """Sources use the artifacts' S3 client: botocore's standard retries over real HTTP faults."""
    proxy = S3FaultProxy(s3_endpoint)
    try:
        monkeypatch.setenv("RECSYS_S3_ENDPOINT_URL", proxy.url)
        s3 = boto3.client("s3", endpoint_url=s3_endpoint)
        if "retries" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket="retries")
        s3.put_object(Bucket="retries", Key="events/part.csv", Body=LOG.to_csv(index=False).encode())
        proxy.fail("GET", 503, "drop")  # the listing is throttled, the download's connection dropped
        assert len(read_interactions("s3://retries/events/part.csv")) == len(LOG)
        assert len(proxy.requests) == 4
    finally:
        proxy.close()



def test_format_detection_names_the_choices():
    assert detect_format("x/ratings.dat") == "movielens-1m"
    with pytest.raises(SourceError, match="source_format"):
        detect_format("events.log")


@pytest.mark.parametrize(
    "name, users, items, interactions",
    [("Beauty", 22_363, 12_101, 198_502), ("Sports_and_Outdoors", 35_598, 18_357, 296_337)],
)
def test_benchmark_datasets_load_with_published_statistics(name, users, items, interactions):
    frame = read_interactions(str(DATASETS / f"{name}.txt"))
    assert (frame["user_id"].nunique(), frame["item_id"].nunique(), len(frame)) == (users, items, interactions)


def test_item_attributes_json_and_csv(tmp_path):
    from recsys_tasks.data.sources import read_item_attributes

    beauty = read_item_attributes(str(DATASETS / "Beauty_item2attributes.json"))
    assert beauty["item_id"].nunique() == 12_101 and set(beauty.columns) == {"item_id", "attribute"}
    (tmp_path / "items.csv").write_text("item_id,attribute\ni1,brand:a\ni1,cat:x\ni2,cat:y\n")
    assert len(read_item_attributes(str(tmp_path / "items.csv"))) == 3
