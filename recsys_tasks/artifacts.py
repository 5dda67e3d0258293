"""Artifact storage under RECSYS_ARTIFACT_ROOT: a local folder or an `s3://bucket/prefix`.

Both backends take the same keys (`runs/<run>/prepared.npz`, `models/<version>/model.pt`...)
and write whole objects atomically: a local write goes to a temporary file that is renamed
into place, and an S3 PUT is atomic by itself. So a reader never sees half an artifact.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_tasks.errors import ArtifactNotFoundError


def run_key(run_id: str) -> str:
    """A path-safe folder name for an Airflow run id (which holds ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_") or "run"


class ArtifactStore:
    def __init__(self, root: str, endpoint_url: str | None = None):
        self.root = root.rstrip("/")
        self.is_s3 = root.startswith("s3://")
        if self.is_s3:
            import boto3  # only deployments on S3 pay for the import

            bucket, _, prefix = self.root[len("s3://") :].partition("/")
            self.bucket, self.prefix = bucket, prefix.strip("/")
            endpoint = endpoint_url or os.environ.get("RECSYS_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
            self._s3 = boto3.client("s3", endpoint_url=endpoint)

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _s3_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def write_bytes(self, key: str, data: bytes) -> str:
        if self.is_s3:
            self._s3.put_object(Bucket=self.bucket, Key=self._s3_key(key), Body=data)
        else:
            path = Path(self.root, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes:
        if self.is_s3:
            try:
                return self._s3.get_object(Bucket=self.bucket, Key=self._s3_key(key))["Body"].read()
            except self._s3.exceptions.NoSuchKey:
                raise ArtifactNotFoundError(f"no artifact at {self.uri(key)}") from None
        path = Path(self.root, key)
        if not path.exists():
            raise ArtifactNotFoundError(f"no artifact at {path}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        if self.is_s3:
            found = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self._s3_key(key), MaxKeys=1)
            return any(obj["Key"] == self._s3_key(key) for obj in found.get("Contents", []))
        return Path(self.root, key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys under a folder-like prefix, sorted."""
        if self.is_s3:
            keys: list[str] = []
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._s3_key(prefix))
            strip = len(self.prefix) + 1 if self.prefix else 0
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
            return sorted(keys)
        base = Path(self.root, prefix)
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))

    def write_json(self, key: str, value: Any) -> str:
        return self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_frame(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(key, buffer.getvalue())

    def read_frame(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(key)))

    def local_path(self, key: str) -> Path | None:
        """The file behind a key on the local backend (for people to open), else None."""
        return None if self.is_s3 else Path(self.root, key)
