"""Bucket on a local folder: URLs, Delta options, objects, compare-and-swap, the retry policy."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError

from akasha_ray.config import RegionConfig
from akasha_ray.errors import ConfigError, Unavailable
from akasha_ray.replication.bucket import Backoff, Bucket, CasFailed, retry

FAST = Backoff(attempts=3, base_s=0.01, cap_s=0.02)


def test_urls_and_table_uris(tmp_path: Path) -> None:
    s3 = Bucket("s3://dr-east/some/prefix/", "http://127.0.0.1:9000")
    assert s3.table_uri("akasha-dr", "log", "west") == "s3://dr-east/some/prefix/akasha-dr/log/west"
    assert Bucket("s3://dr-east").table_uri("a", "b") == "s3://dr-east/a/b"
    local = Bucket(str(tmp_path / "b"))
    assert local.table_uri("akasha-dr", "log", "west") == str(tmp_path / "b/akasha-dr/log/west")
    assert Bucket(f"file://{tmp_path}/b").root == tmp_path / "b"
    assert "dr-east" in s3.describe() and "127.0.0.1:9000" in s3.describe()
    region = RegionConfig(
        name="east", role="primary", bucket="s3://dr-east", endpoint_url="http://x"
    )
    assert Bucket.for_region(region).endpoint_url == "http://x"


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [("s3://ab", None), ("gs://bucket", None), ("/tmp/folder", "http://127.0.0.1:9000")],
)
def test_bad_urls_name_themselves(url: str, endpoint: str | None) -> None:
    with pytest.raises(ConfigError, match=url):
        Bucket(url, endpoint)


def test_storage_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    options = Bucket("s3://dr-east", "http://127.0.0.1:9000").storage_options
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert options["AWS_ALLOW_HTTP"] == "true"
    assert options["conditional_put"] == "etag"
    assert options["AWS_ACCESS_KEY_ID"] == "id" and options["AWS_SECRET_ACCESS_KEY"] == "secret"
    assert options["AWS_REGION"] == "eu-west-1"
    assert "AWS_SESSION_TOKEN" not in options
    assert "AWS_ALLOW_HTTP" not in Bucket("s3://dr-east", "https://s3.example").storage_options
    assert Bucket(str(tmp_path)).storage_options == {}


def test_objects(tmp_path: Path) -> None:
    bucket = Bucket(str(tmp_path / "b"))
    assert bucket.list() == [] and bucket.get("a/x") is None
    etag = bucket.put("a/x", b"one")
    bucket.put("a/y", b"two")
    bucket.put("b", b"three")
    blob = bucket.get_blob("a/x")
    assert blob is not None and blob.data == b"one" and blob.etag == etag
    assert bucket.list() == ["a/x", "a/y", "b"]
    assert bucket.list("a/") == ["a/x", "a/y"]
    bucket.put("a/x", b"uno")
    assert bucket.get("a/x") == b"uno"
    bucket.delete("a/x")
    bucket.delete("a/x")  # absent: no error
    assert bucket.list("a/") == ["a/y"]
    assert not [p for p in (tmp_path / "b").rglob("*.tmp")]  # no temp files left behind


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/../b", ".hidden", "a/."])
def test_bad_keys_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="bad object key"):
        Bucket(str(tmp_path)).put(key, b"x")


def test_put_if(tmp_path: Path) -> None:
    bucket = Bucket(str(tmp_path))
    first = bucket.put_if("w.json", b"1", None)
    with pytest.raises(CasFailed, match="absent"):
        bucket.put_if("w.json", b"2", None)
    second = bucket.put_if("w.json", b"2", first)
    with pytest.raises(CasFailed, match=first):
        bucket.put_if("w.json", b"3", first)  # stale
    assert bucket.get("w.json") == b"2"
    assert bucket.get_blob("w.json").etag == second  # type: ignore[union-attr]


def test_put_if_from_threads_has_one_winner(tmp_path: Path) -> None:
    bucket = Bucket(str(tmp_path))
    etag = bucket.put("w.json", b"0")
    start = threading.Barrier(8)
    won: list[int] = []
    lost: list[int] = []

    def swap(i: int) -> None:
        start.wait()
        try:
            bucket.put_if("w.json", str(i).encode() + b"!", etag)
            won.append(i)
        except CasFailed:
            lost.append(i)

    threads = [threading.Thread(target=swap, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == 7
    assert bucket.get("w.json") == f"{won[0]}!".encode()


def test_retry_policy() -> None:
    assert Backoff(attempts=6, base_s=0.2, cap_s=1.0).delays() == [0.2, 0.4, 0.8, 1.0, 1.0]
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise EndpointConnectionError(endpoint_url="http://x")
        return "ok"

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, EndpointConnectionError)

    assert retry(flaky, transient=transient, backoff=FAST, what="w") == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(KeyError):  # not transient: at once
        retry(lambda: calls.append(1) or {}["x"], transient=transient, backoff=FAST, what="w")
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(Unavailable, match="put it in east failed 3 times"):
        retry(
            lambda: calls.append(1) or flaky_forever(),
            transient=transient,
            backoff=FAST,
            what="put it in east",
        )
    assert len(calls) == 3


def flaky_forever() -> None:
    raise EndpointConnectionError(endpoint_url="http://x")


def test_unreachable_endpoint_is_unavailable_naming_the_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bucket = Bucket("s3://dr-gone", f"http://127.0.0.1:{port}", backoff=FAST, timeout_s=1)
    with pytest.raises(Unavailable, match=f"s3://dr-gone at http://127.0.0.1:{port}"):
        bucket.get("akasha-dr/witness.json")


def test_missing_credentials_say_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match=r"s3://dr-east .*no S3 credentials"):
        Bucket("s3://dr-east", "http://127.0.0.1:1", backoff=FAST).get("x")
