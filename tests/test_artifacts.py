"""One artifact store, two backends: a local folder and a real S3 endpoint on localhost."""

import boto3
import pandas as pd
import pytest

from recsys_tasks.artifacts import ArtifactStore, run_key
from recsys_tasks.errors import ArtifactNotFoundError


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"b{tmp_path.name.replace('_', '-').lower()[-20:]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return ArtifactStore(f"s3://{bucket}/recsys", endpoint_url=endpoint)


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
