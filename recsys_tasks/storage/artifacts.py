"""Artifact storage under RECSYS_ARTIFACT_ROOT: a local folder or an `s3://bucket/prefix`.

Both backends take the same keys (`runs/<run>/prepared.npz`, `models/<version>/model.pt`...)
and write whole objects atomically: a local write goes to a temporary file that is renamed
into place, and an S3 PUT is atomic by itself. So a reader never sees half an artifact.

Transient S3 failures (5xx, throttling, a dropped connection) are retried by botocore's standard
retry mode, configured once for sources and artifacts alike (`environment.s3_client`); anything
else (a missing key, access denied) fails at once.

A multi-object artifact such as a model version is not written through temporary keys and
copies: each object is atomic, and a version counts as registered only once its
marker object (`models/<version>/model.pt`, the key the registry lists) exists, so a writer
that stops half-way leaves a folder the registry does not list and retention removes.

Keys given to `list`, `folders` and `delete_prefix` are folders: `runs/a` covers `runs/a/...`,
never `runs/ab/...`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pandas as pd

from recsys_tasks.config import environment
from recsys_tasks.errors import ArtifactNotFoundError, RecsysError
from recsys_tasks.redact import redact_obj

log = logging.getLogger(__name__)

T = TypeVar("T")

S3_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException"}


class ArtifactStoreError(RecsysError):
    """The artifact store refused an operation (after retries, for transient failures)."""


class Deleted(NamedTuple):
    objects: int
    bytes: int


def _folder(prefix: str) -> str:
    """`runs/a` -> `runs/a/`; the empty prefix (the whole root) stays empty."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def is_transient(error: BaseException) -> bool:
    """S3 errors another attempt may cure: server-side 5xx, throttling, connection trouble."""
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

    if isinstance(error, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return False


class ArtifactStore:
    def __init__(self, root: str, endpoint_url: str | None = None):
        self.root = root.rstrip("/")
        self.is_s3 = root.startswith("s3://")
        if self.is_s3:
            bucket, _, prefix = self.root[len("s3://") :].partition("/")
            self.bucket, self.prefix = bucket, prefix.strip("/")
            endpoint = endpoint_url or environment.s3_endpoint_url()
            self._s3 = environment.s3_client(endpoint)

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _s3_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _s3_call(self, what: str, call: Callable[[], T]) -> T:
        """Run one S3 request (botocore retries the transient failures); a transient failure that
        outlasted the retries becomes an ArtifactStoreError saying what failed."""
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - sorted by is_transient, re-raised otherwise
            if not is_transient(error):
                raise
            raise ArtifactStoreError(f"{what} failed {environment.s3_max_attempts()} times, last with: {error}") from error

    def write_bytes(self, key: str, data: bytes) -> str:
        if self.is_s3:
            self._s3_call(
                f"upload of {self.uri(key)}",
                lambda: self._s3.put_object(Bucket=self.bucket, Key=self._s3_key(key), Body=data),
            )
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
                return self._s3_call(
                    f"download of {self.uri(key)}",
                    lambda: self._s3.get_object(Bucket=self.bucket, Key=self._s3_key(key))["Body"].read(),
                )
            except self._s3.exceptions.NoSuchKey:
                raise ArtifactNotFoundError(f"no artifact at {self.uri(key)}") from None
        path = Path(self.root, key)
        if not path.exists():
            raise ArtifactNotFoundError(f"no artifact at {path}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        if self.is_s3:
            found = self._s3_call(
                f"listing of {self.uri(key)}",
                lambda: self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self._s3_key(key), MaxKeys=1),
            )
            return any(obj["Key"] == self._s3_key(key) for obj in found.get("Contents", []))
        return Path(self.root, key).is_file()

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Key -> size in bytes of every object under a folder (`""`: the whole root)."""
        if self.is_s3:
            strip = len(self.prefix) + 1 if self.prefix else 0
            paginator = self._s3.get_paginator("list_objects_v2")
            start = self._s3_key(_folder(prefix))

            def pages() -> list[dict]:
                return list(paginator.paginate(Bucket=self.bucket, Prefix=start))

            found: dict[str, int] = {}
            for page in self._s3_call(f"listing of {self.uri(prefix)}", pages):
                found.update((obj["Key"][strip:], int(obj["Size"])) for obj in page.get("Contents", []))
            return found
        base = Path(self.root, prefix)
        if not base.is_dir():
            return {}
        return {
            str(p.relative_to(self.root)): p.stat().st_size
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")  # `.name.xxx`: a write in progress
        }

    def list(self, prefix: str = "") -> list[str]:
        """Keys under a folder (`""`: the whole root), sorted."""
        return sorted(self.sizes(prefix))

    def folders(self, prefix: str) -> list[str]:
        """Names of the sub-folders directly under a folder (`runs` -> run keys), sorted."""
        if self.is_s3:
            start = self._s3_key(_folder(prefix))
            paginator = self._s3.get_paginator("list_objects_v2")

            def pages() -> list[dict]:
                return list(paginator.paginate(Bucket=self.bucket, Prefix=start, Delimiter="/"))

            names = {
                common["Prefix"][len(start) :].rstrip("/")
                for page in self._s3_call(f"listing of {self.uri(prefix)}", pages)
                for common in page.get("CommonPrefixes", [])
            }
            return sorted(names)
        base = Path(self.root, prefix)
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def delete(self, key: str) -> bool:
        """Remove one object; False when there was none."""
        if self.is_s3:
            if not self.exists(key):
                return False
            self._s3_call(
                f"deletion of {self.uri(key)}", lambda: self._s3.delete_object(Bucket=self.bucket, Key=self._s3_key(key))
            )
            return True
        path = Path(self.root, key)
        if not path.is_file():
            return False
        path.unlink()
        return True

    def delete_prefix(self, prefix: str) -> Deleted:
        """Remove a whole folder (every object under `prefix/`); how many objects and bytes went.

        The empty prefix is refused: wiping the whole root is never what a caller means.
        """
        if not prefix.strip("/"):
            raise ValueError("delete_prefix needs a folder; refusing to delete the whole artifact root")
        if not self.is_s3:
            base = Path(self.root, prefix)
            if not base.is_dir():
                return Deleted(0, 0)
            files = [p for p in base.rglob("*") if p.is_file()]
            freed = Deleted(len(files), sum(p.stat().st_size for p in files))
            shutil.rmtree(base)
            return freed
        found = self.sizes(prefix)
        keys = sorted(found)
        for lo in range(0, len(keys), S3_DELETE_BATCH):
            batch = [{"Key": self._s3_key(k)} for k in keys[lo : lo + S3_DELETE_BATCH]]

            def delete_batch(batch: list[dict] = batch) -> dict:
                return self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

            response = self._s3_call(f"deletion under {self.uri(prefix)}", delete_batch)
            if errors := response.get("Errors"):
                first = errors[0]
                raise ArtifactStoreError(
                    f"{len(errors)} objects under {self.uri(prefix)} were not deleted, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return Deleted(len(keys), sum(found.values()))

    def write_json(self, key: str, value: Any) -> str:
        """JSON artifacts (configs, lineage, reports) never hold a credential: URLs are masked."""
        return self.write_bytes(
            key, json.dumps(redact_obj(value, urls_only=True), indent=2, sort_keys=True, default=str).encode()
        )

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_frame(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(key, buffer.getvalue())

    def read_frame(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(key)), columns=columns)

    def local_path(self, key: str) -> Path | None:
        """The file behind a key on the local backend (for people to open), else None."""
        return None if self.is_s3 else Path(self.root, key)
