"""The registry on a local folder and on a real S3 endpoint, through the same code."""

import boto3
import pytest

from recsys_tasks.errors import ArtifactNotFoundError, RecsysError
from recsys_tasks.storage import registry
from recsys_tasks.storage.artifacts import ArtifactStore


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "local":
        store = ArtifactStore(str(tmp_path / "artifacts"))
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"reg{tmp_path.name.replace('_', '-').lower()[-20:]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        store = ArtifactStore(f"s3://{bucket}/prod", endpoint_url=endpoint)
    for n, version in enumerate(["v-a", "v-b", "v-c"]):
        store.write_bytes(f"models/{version}/model.pt", b"weights")
        store.write_json(f"models/{version}/lineage.json", {"run_id": f"run-{n}", "created_at": f"2026-11-0{n + 1}"})
        store.write_json(f"models/{version}/metrics.json", {"model": {"NDCG@10": 0.1 * (n + 1)}})
    return store


def test_promote_and_rollback_walk_the_history(store):
    assert registry.production_version(store) is None
    registry.promote(store, "v-a", "run-0")
    registry.promote(store, "v-b", "run-1")
    registry.promote(store, "v-c", "run-2")
    assert registry.production_version(store) == "v-c"
    assert registry.rollback(store)["model_version"] == "v-b"
    assert registry.rollback(store)["model_version"] == "v-a"
    with pytest.raises(RecsysError, match="nothing to roll back"):
        registry.rollback(store)


def test_list_and_describe(store):
    registry.promote(store, "v-b")
    versions = registry.list_versions(store)
    assert [v["model_version"] for v in versions] == ["v-c", "v-b", "v-a"]  # newest first
    assert [v["production"] for v in versions] == [False, True, False]
    assert registry.describe(store, "v-c")["metrics"]["model"]["NDCG@10"] == pytest.approx(0.3)


def test_unknown_versions_are_refused(store):
    with pytest.raises(ArtifactNotFoundError, match="v-zzz"):
        registry.promote(store, "v-zzz")
