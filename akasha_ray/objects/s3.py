"""Objects in an S3-compatible bucket (AWS S3, R2, MinIO, SeaweedFS) through boto3.

Imported only when `objects.backend` is s3 (boto3 is an optional dependency).
boto3 is blocking, so every call runs in a worker thread; one client is shared (boto3 clients
are thread-safe, sessions are not). A PUT replaces an object atomically, as the seam requires.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from akasha_ray.errors import ConfigError, NotFound, Unavailable
from akasha_ray.objects.base import ObjectInfo, check_key, check_prefix

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        """`client` is a boto3 S3 client; keys live under `prefix` inside `bucket`."""
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
    ) -> S3ObjectStore:
        """Open `s3://bucket/prefix`; credentials default to boto3's chain (env, profile, role)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"objects.url must look like s3://bucket/prefix, not {url!r}")
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        return cls(client, parsed.netloc, parsed.path)

    def describe(self) -> str:
        endpoint = self._client.meta.endpoint_url
        return f"s3://{self.bucket}/{self.prefix} at {endpoint}"

    async def put(self, key: str, data: bytes) -> None:
        await self._call("put_object", Key=self._full(key), Body=data)

    async def get(self, key: str) -> bytes:
        try:
            return await self._call("get_object", Key=self._full(key), read_body=True)
        except NotFound as exc:
            raise NotFound(f"no object {key!r}") from exc

    async def exists(self, key: str) -> bool:
        try:
            await self._call("head_object", Key=self._full(key))
        except NotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Key=self._full(key))

    async def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        full = self.prefix + check_prefix(prefix)
        return await asyncio.to_thread(self._list, full)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _list(self, full_prefix: str) -> list[ObjectInfo]:
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][len(self.prefix) :], int(item["Size"])))
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, self.bucket) from exc
        found.sort(key=lambda info: info.key)
        return found

    async def _call(self, operation: str, *, read_body: bool = False, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._call_blocking, operation, read_body, kwargs)

    def _call_blocking(self, operation: str, read_body: bool, kwargs: dict[str, Any]) -> Any:
        try:
            response = getattr(self._client, operation)(Bucket=self.bucket, **kwargs)
            return response["Body"].read() if read_body else response
        except (BotoCoreError, ClientError) as exc:  # the body can fail mid-read too
            raise _translate(exc, self.bucket) from exc


def _translate(exc: BotoCoreError | ClientError, bucket: str) -> Exception:
    """botocore's errors as Akasha's: a missing object, a missing bucket, an unreachable store."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return NotFound(str(exc))
        if code == "NoSuchBucket":
            return ConfigError(f"bucket {bucket!r} does not exist (objects.url)")
        if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
            return ConfigError(f"access to bucket {bucket!r} denied: check the S3 credentials")
        return Unavailable(f"object store error {code}: {exc}")
    return Unavailable(f"object store unreachable: {exc}")
