"""A region's bucket: an S3-compatible bucket (`s3://name[/prefix]`) or a local folder.

It gives Delta Lake its table URIs and storage options, and the few object operations the rest
of replication needs: put, get, list and a compare-and-swap put (`put_if`) for the witness.

Blocking on purpose (boto3 and deltalake are): async callers use `asyncio.to_thread`.
Transient failures (connection errors, timeouts, 5xx, throttling) are retried here with a
bounded exponential backoff, and botocore's own retries are off so that `put_if` knows when an
earlier attempt of its own may have landed (`CasFailed.after_retry`). What still fails is an
`Unavailable` naming the bucket.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from akasha_ray.errors import ConfigError, Conflict, Unavailable
from akasha_ray.objects.local import write_durably

if TYPE_CHECKING:
    from akasha_ray.config import RegionConfig

T = TypeVar("T")

_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CAS_LOST = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


class CasFailed(Conflict):
    """`put_if` lost: the object is not (or no longer) the one the caller expected.

    `after_retry`: an earlier attempt of this same call failed in transit and may have landed,
    so the object may hold the caller's own bytes (the caller re-reads to tell).
    """

    code = "cas_failed"

    def __init__(self, message: str, *, after_retry: bool = False) -> None:
        super().__init__(message)
        self.after_retry = after_retry


@dataclass(frozen=True)
class Blob:
    data: bytes
    etag: str


@dataclass(frozen=True)
class Backoff:
    """Attempts and delays of a retried call: base * 2**n, capped, `attempts` calls in all."""

    attempts: int = 4
    base_s: float = 0.2
    cap_s: float = 2.0

    def delays(self) -> list[float]:
        return [min(self.cap_s, self.base_s * 2**n) for n in range(self.attempts - 1)]


def retry(
    call: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `call`; on a transient error wait and try again, at most `backoff.attempts` times."""
    for delay in [*backoff.delays(), None]:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            if delay is None:
                raise Unavailable(f"{what} failed {backoff.attempts} times: {exc}") from exc
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Bucket:
    """`url` is `s3://name[/prefix]` (with `endpoint_url` for S3-compatible stores) or a folder.

    Keys are relative to the prefix (or folder), '/'-separated. Credentials come from the usual
    `AWS_*` environment variables (or boto3's other sources); the region from `AWS_REGION` /
    `AWS_DEFAULT_REGION`, else us-east-1.
    """

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        *,
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self.endpoint_url = endpoint_url
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            if len(parsed.netloc) < 3:
                raise ConfigError(f"bucket {url!r}: an S3 bucket name has at least 3 characters")
            self.name: str | None = parsed.netloc
            self.prefix = "/".join(p for p in parsed.path.split("/") if p)
            self.root: Path | None = None
        elif parsed.scheme in ("", "file"):
            if endpoint_url is not None:
                raise ConfigError(f"bucket {url!r} is a folder: it takes no endpoint_url")
            self.name = None
            self.prefix = ""
            self.root = Path(parsed.path if parsed.scheme == "file" else url).expanduser()
            self.root = self.root.resolve()
        else:
            raise ConfigError(f"bucket {url!r}: expected s3://bucket[/prefix] or a folder path")
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def for_region(cls, region: RegionConfig) -> Bucket:
        return cls(region.bucket, region.endpoint_url)

    def describe(self) -> str:
        """What error messages name: the bucket and, for S3, its endpoint."""
        if self.root is not None:
            return f"bucket {self.root}"
        return f"bucket {self.url} at {self.endpoint_url or 'AWS S3'}"

    def __repr__(self) -> str:
        return f"Bucket({self.url!r}, {self.endpoint_url!r})"

    # Delta Lake

    def table_uri(self, *parts: str) -> str:
        keys = _check_key("/".join(parts))
        if self.root is not None:
            return str(self.root / keys)
        return f"s3://{self.name}/{self._full(keys)}"

    @property
    def storage_options(self) -> dict[str, str]:
        """deltalake's options: endpoint, plain HTTP if so, commits by conditional put."""
        if self.root is not None:
            return {}
        options = {
            "AWS_REGION": _region(),
            "conditional_put": "etag",  # safe concurrent commits without a lock table
            "timeout": f"{self.timeout_s:g}s",
            "connect_timeout": f"{min(self.timeout_s, 5.0):g}s",
            # object_store retries by itself (10 times over 3 minutes by default): keep it
            # short, the shipper's own backoff and the coordinator's retry loop sit above.
            "max_retries": "2",
            "retry_timeout": f"{2 * self.timeout_s:g}s",
        }
        if self.endpoint_url is not None:
            options["AWS_ENDPOINT_URL"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(name):
                options[name] = os.environ[name]
        return options

    # Objects

    def put(self, key: str, data: bytes) -> str:
        """Write (or replace) an object atomically; returns its etag."""
        if self.root is not None:
            return _local_write(self._path(key), data)
        response = self._s3(
            "put", key, lambda c, k: c.put_object(Bucket=self.name, Key=k, Body=data)
        )
        return str(response["ETag"])

    def get(self, key: str) -> bytes | None:
        blob = self.get_blob(key)
        return None if blob is None else blob.data

    def get_blob(self, key: str) -> Blob | None:
        """The object's bytes and etag (for a later `put_if`), None when absent."""
        if self.root is not None:
            try:
                data = self._path(key).read_bytes()
            except FileNotFoundError:
                return None
            return Blob(data, _md5(data))

        def read(client: Any, full: str) -> Blob | None:
            try:
                response = client.get_object(Bucket=self.name, Key=full)
            except client.exceptions.NoSuchKey:
                return None
            return Blob(response["Body"].read(), str(response["ETag"]))

        return self._s3("get", key, read)

    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix` (a plain string prefix of the key), sorted."""
        if self.root is not None:
            if not self.root.exists():
                return []
            found = (
                p.relative_to(self.root).as_posix()
                for p in self.root.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )
            return sorted(k for k in found if k.startswith(prefix))

        def listing(client: Any, full: str) -> list[str]:
            keys = []
            skip = len(self._full(""))
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=full
            ):
                keys.extend(item["Key"][skip:] for item in page.get("Contents", []))
            return sorted(keys)

        return self._s3("list", prefix, listing, check=False)

    def delete(self, key: str) -> None:
        if self.root is not None:
            self._path(key).unlink(missing_ok=True)
            return
        self._s3("delete", key, lambda c, k: c.delete_object(Bucket=self.name, Key=k))

    def put_if(self, key: str, data: bytes, etag: str | None) -> str:
        """Compare-and-swap: write only if the object's etag is `etag` (None: only if absent).

        Returns the new etag; raises `CasFailed` when the object is not the one expected.
        S3: `If-Match` / `If-None-Match: *`. A folder: the swap happens under an exclusive
        lock on the object's folder, so it is atomic between threads and processes of one host.
        """
        if self.root is not None:
            return self._local_put_if(key, data, etag)
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        retried = False

        def note(_: BaseException) -> None:
            nonlocal retried
            retried = True

        def attempt(client: Any, full: str) -> str:
            try:
                response = client.put_object(Bucket=self.name, Key=full, Body=data, **condition)
            except client.exceptions.ClientError as exc:
                if _code(exc) in _CAS_LOST:
                    raise CasFailed(
                        f"{self.describe()}: {key} is not the object expected "
                        f"(expected: {'absent' if etag is None else 'etag ' + etag})",
                        after_retry=retried,
                    ) from exc
                raise
            return str(response["ETag"])

        return self._s3("put_if", key, attempt, on_retry=note)

    # Internals

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / _check_key(key)

    def _local_put_if(self, key: str, data: bytes, etag: str | None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # per open file: excludes other threads too
            try:
                current = _md5(path.read_bytes())
            except FileNotFoundError:
                current = None
            if current != etag:
                raise CasFailed(
                    f"{self.describe()}: {key} is not the object expected "
                    f"(expected: {'absent' if etag is None else 'etag ' + etag})"
                )
            return _local_write(path, data)
        finally:
            os.close(folder)  # releases the lock

    def _boto(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=_region(),
                    config=Config(
                        retries={"total_max_attempts": 1, "mode": "standard"},  # ours: see above
                        connect_timeout=min(self.timeout_s, 5.0),
                        read_timeout=self.timeout_s,
                        s3={"addressing_style": "path"},
                    ),
                )
            return self._client

    def _s3(
        self,
        op: str,
        key: str,
        call: Callable[[Any, str], T],
        *,
        check: bool = True,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> T:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        full = self._full(_check_key(key) if check else key)
        client = self._boto()
        try:
            return retry(
                lambda: call(client, full),
                transient=_transient,
                backoff=self.backoff,
                what=f"{op} {key!r} in {self.describe()}",
                on_retry=on_retry,
            )
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise ConfigError(f"{self.describe()} does not exist") from exc
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
                raise ConfigError(f"{self.describe()}: access denied ({code})") from exc
            raise Unavailable(f"{op} {key!r} in {self.describe()}: {code}: {exc}") from exc
        except NoCredentialsError as exc:
            raise ConfigError(
                f"{self.describe()}: no S3 credentials (AWS_ACCESS_KEY_ID...)"
            ) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"{op} {key!r} in {self.describe()}: {exc}") from exc


def _transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError):  # refused, reset, timeouts
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _code(exc) in _TRANSIENT_CODES or int(status or 0) >= 500
    return False


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise ValueError(f"bad object key {key!r}: '/'-separated names, none empty or hidden")
    return key


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _local_write(path: Path, data: bytes) -> str:
    """objects/local.py's durable write; the etag a folder bucket gives it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, data)
    return _md5(data)
