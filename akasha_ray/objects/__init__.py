"""The objects seam: byte objects in a local folder (default) or an S3-compatible bucket.

`open_object_store` picks the backend from configuration and imports it only then, so the embedded
default never needs boto3 installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from akasha_ray.errors import ConfigError
from akasha_ray.objects.base import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    from akasha_ray.config import ObjectsConfig

__all__ = ["ObjectInfo", "ObjectStore", "objects_dir", "open_object_store"]


def objects_dir(data_dir: Path) -> Path:
    return data_dir / "objects"


def open_object_store(config: ObjectsConfig, data_dir: Path) -> ObjectStore:
    """The configured backend: a folder under `data_dir`, or `objects.url` (s3://bucket/prefix).

    S3 credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    a profile, an instance role), never from Akasha's configuration file.
    """
    if config.backend == "local":
        from akasha_ray.objects.local import LocalObjectStore

        return LocalObjectStore(objects_dir(data_dir))
    if config.backend == "s3":
        if not config.url:
            raise ConfigError(
                "objects.backend is s3 but objects.url is unset: set AKASHA_OBJECTS__URL to "
                "s3://bucket/prefix"
            )
        from akasha_ray.objects.s3 import S3ObjectStore

        return S3ObjectStore.from_url(config.url, endpoint_url=config.endpoint_url)
    raise ConfigError(f"unknown objects.backend {config.backend!r}")
