"""One artifact store, two backends: a local folder and a real S3 endpoint on localhost."""

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from helpers import S3FaultProxy
from recsys_tasks.errors import ArtifactNotFoundError
from recsys_tasks.storage import artifacts
from recsys_tasks.storage.artifacts import ArtifactStore, ArtifactStoreError
from recsys_tasks.storage.layout import run_key


def _s3_store(endpoint, tmp_path):
    bucket = f"b{tmp_path.name.replace('_', '-').lower()[-20:]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return ArtifactStore(f"s3://{bucket}/recsys", endpoint_url=endpoint)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    return _s3_store(request.getfixturevalue("s3_endpoint"), tmp_path)


@pytest.fixture()
def s3_store(s3_endpoint, tmp_path):
    return _s3_store(s3_endpoint, tmp_path)


def test_round_trips_bytes_json_and_frames(store):
    store.write_bytes("models/v1/model.pt", b"\x00weights")
    store.write_json("models/v1/metrics.json", {"NDCG@10": 0.5})
    store.write_frame("runs/r/part.parquet", pd.DataFrame({"a": [1, 2]}))
    assert store.read_bytes("models/v1/model.pt") == b"\x00weights"
    assert store.read_json("models/v1/metrics.json") == {"NDCG@10": 0.5}
    assert store.read_frame("runs/r/part.parquet")["a"].tolist() == [1, 2]
    assert store.exists("models/v1/model.pt") and not store.exists("models/v1/missing")
    assert store.list("models/v1") == ["models/v1/metrics.json", "models/v1/model.pt"]


def test_missing_artifact_names_its_location(store):
    with pytest.raises(ArtifactNotFoundError, match="models/none"):
        store.read_bytes("models/none/model.pt")


def test_run_keys_are_path_safe():
    assert run_key("manual__2026-11-22T19:41:40.368900+00:00") == "manual__2026-11-22T19_41_40.368900_00_00"


def test_lists_and_deletes_folders_not_name_prefixes(store):
    for key in ("runs/a/x.json", "runs/a/sub/y.json", "runs/ab/z.json", "models/v1/model.pt"):
        store.write_bytes(key, b"12345")
    assert store.list("runs/a") == ["runs/a/sub/y.json", "runs/a/x.json"]
    assert store.folders("runs") == ["a", "ab"]
    assert store.sizes("runs/ab") == {"runs/ab/z.json": 5}
    assert len(store.list()) == 4

    assert store.delete_prefix("runs/a") == (2, 10)
    assert store.list("runs") == ["runs/ab/z.json"] and store.folders("runs") == ["ab"]
    assert store.delete_prefix("runs/a") == (0, 0)
    assert store.delete("models/v1/model.pt") is True and store.delete("models/v1/model.pt") is False
    assert store.list() == ["runs/ab/z.json"]
    with pytest.raises(ValueError, match="whole artifact root"):
        store.delete_prefix("/")


def test_s3_deletes_in_batches(s3_store, monkeypatch):
    store = s3_store
    monkeypatch.setattr(artifacts, "S3_DELETE_BATCH", 2)
    calls = []
    real = store._s3.delete_objects
    monkeypatch.setattr(store._s3, "delete_objects", lambda **kw: calls.append(len(kw["Delete"]["Objects"])) or real(**kw))
    for i in range(5):
        store.write_bytes(f"runs/r/{i}.bin", b"x")
    assert store.delete_prefix("runs/r") == (5, 5)
    assert calls == [2, 2, 1] and store.list() == []


@pytest.fixture()
def faulty_s3(s3_endpoint, tmp_path, monkeypatch):
    """An S3 store whose requests pass through a proxy that can fail them over HTTP."""
    monkeypatch.setenv("RECSYS_S3_MAX_ATTEMPTS", "3")  # the default 5 backs off for up to 15 s
    proxy = S3FaultProxy(s3_endpoint)
    bucket = f"f{tmp_path.name.replace('_', '-').lower()[-20:]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    yield ArtifactStore(f"s3://{bucket}/recsys", endpoint_url=proxy.url), proxy
    proxy.close()


def test_s3_uploads_and_downloads_survive_transient_failures(faulty_s3):
    store, proxy = faulty_s3
    proxy.fail("PUT", 503, "drop")  # throttled, then a connection closed without an answer
    store.write_bytes("models/v2/model.pt", b"weights")
    assert proxy.count("PUT", "models/v2/model.pt") == 3
    proxy.fail("GET", 500)
    assert store.read_bytes("models/v2/model.pt") == b"weights"
    assert proxy.count("GET", "models/v2/model.pt") == 2


def test_s3_gives_up_on_lasting_or_permanent_failures(faulty_s3):
    store, proxy = faulty_s3
    proxy.fail("PUT", *[503] * 10)
    with pytest.raises(ArtifactStoreError, match="failed 3 times"):
        store.write_bytes("models/v3/model.pt", b"weights")
    assert proxy.count("PUT", "models/v3/model.pt") == 3
    proxy.faults.clear()
    assert not store.exists("models/v3/model.pt")

    proxy.fail("PUT", 403)
    with pytest.raises(ClientError, match="AccessDenied"):
        store.write_bytes("models/v3/model.pt", b"weights")
    assert proxy.count("PUT", "models/v3/model.pt") == 4  # retrying cannot fix a refusal: one more request
