"""`akasha backup`, `restore`, `export` and `import`: they join the running deployment's Ray
cluster (as `akasha migrate` does) and run the snapshot, restore and bundle code there."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from akasha_ray.config import Settings
from akasha_ray.errors import ConfigError, InvalidInput


def add_parsers(sub: Any) -> None:
    """The four commands, on the CLI's subparsers."""
    cmd = sub.add_parser("backup", help="snapshot every store into a bucket now")
    cmd.set_defaults(run=backup)
    cmd.add_argument(
        "--to", help="bucket: s3://name[/prefix] or a folder (default: the backup region's)"
    )
    cmd.add_argument("--endpoint-url", help="S3-compatible endpoint of --to")
    cmd.add_argument("--region", help="name the snapshot is filed under (default: dr.region)")
    cmd = sub.add_parser("restore", help="restore a region's snapshot and log into an empty Akasha")
    cmd.set_defaults(run=restore)
    cmd.add_argument(
        "--from", dest="source", required=True, help="bucket: s3://name[/prefix] or a folder"
    )
    cmd.add_argument("--endpoint-url", help="S3-compatible endpoint of --from")
    cmd.add_argument("--region", help="the region to restore (default: the only one in the bucket)")
    cmd.add_argument("--as-of", help="RFC 3339 time: the state then (snapshot and log)")
    cmd = sub.add_parser("export", help="write one system's data as a bundle")
    cmd.set_defaults(run=export)
    cmd.add_argument("--system", required=True)
    cmd.add_argument(
        "--out", help="a .tar file, else a folder (default: akasha-<system>-<time>.tar)"
    )
    cmd = sub.add_parser("import", help="apply an export bundle")
    cmd.set_defaults(run=import_)
    cmd.add_argument("file")
    cmd.add_argument(
        "--on-conflict",
        choices=["fail", "skip"],
        default="fail",
        help="a memory held with other content: refuse the import (default) or keep what is held",
    )


def backup(args: argparse.Namespace) -> int:
    from akasha_ray.replication import snapshot

    settings = _connect()
    bucket = _bucket(args.to, args.endpoint_url, settings)
    manifest = asyncio.run(snapshot.take(settings, bucket, args.region))
    print(json.dumps(manifest, indent=1))
    return 0


def restore(args: argparse.Namespace) -> int:
    from akasha_ray.replication.restore import restore as run

    settings = _connect()
    bucket = _bucket(args.source, args.endpoint_url, settings)
    region = args.region or _only_region(bucket)
    report = asyncio.run(run(settings, bucket, region, _time(args.as_of)))
    print(json.dumps(report, indent=1))
    return 0


def export(args: argparse.Namespace) -> int:
    from akasha_ray.replication.bundle import export as run

    settings = _connect()
    out = Path(args.out or f"akasha-{args.system}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar")
    manifest = asyncio.run(run(settings, args.system, out))
    print(f"wrote {out}: " + ", ".join(f"{n} {k}" for k, n in manifest["counts"].items()))
    return 0


def import_(args: argparse.Namespace) -> int:
    from akasha_ray.replication.bundle import import_bundle

    settings = _connect()
    report = asyncio.run(import_bundle(settings, Path(args.file), args.on_conflict))
    print(json.dumps(report, indent=1))
    return 0


def _connect() -> Settings:
    from actors import supervisor
    from akasha_ray import config, local_cluster

    settings = config.load()
    local_cluster.connect(settings, start=False)
    return supervisor.adopt_running(settings)


def _bucket(url: str | None, endpoint_url: str | None, settings: Settings):
    from akasha_ray.replication.bucket import Bucket

    if url:
        return Bucket(url, endpoint_url)
    dr = settings.dr
    backups = [r for r in dr.regions if r.role == "backup"]
    if not backups:
        raise ConfigError("no bucket given (--to) and no backup region configured (dr.regions)")
    return Bucket.for_region(backups[0])


def _only_region(bucket: Any) -> str:
    from akasha_ray.replication.delta_log import ROOT as LOG_ROOT
    from akasha_ray.replication.snapshot import ROOT as SNAPSHOT_ROOT

    found = set()
    for root in (SNAPSHOT_ROOT, LOG_ROOT):
        for key in bucket.list(f"{root}/"):
            found.add(key[len(root) + 1 :].split("/", 1)[0])
    if len(found) != 1:
        raise InvalidInput(
            f"the bucket holds {len(found)} regions ({', '.join(sorted(found)) or 'none'}): "
            "name one with --region",
            field="region",
        )
    return found.pop()


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"--as-of: not an RFC 3339 time: {value!r}", field="as_of") from exc
    if moment.tzinfo is None:
        raise InvalidInput("--as-of needs a time zone offset (e.g. Z)", field="as_of")
    return moment.astimezone(UTC)
