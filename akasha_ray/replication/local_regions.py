"""Several DR regions on this one machine, for the drill (`akasha dr drill`) and its test.

A serving region (primary, secondary) is a whole Akasha: `akasha up` on a Ray head of its own
(its own RAY_TMPDIR, so its own `ray_current_cluster`; its own token file, data dir, namespace and
HTTP port; Ray's ports chosen free by `local_cluster`), configured by a YAML file of its own that
names every region. Every region, the backup too, has its own SeaweedFS S3 endpoint and bucket.
A backup region serves nothing (README, "Regions"): it is its endpoint and bucket, which holds
the log, the snapshots and the witness.

Processes are found by the head id `akasha up` puts in their environment (`local_cluster`), so
killing a region touches nothing else on the machine (never `ray stop`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from akasha_ray import local_cluster
from akasha_ray.errors import Unavailable
from akasha_ray.ports import free_ports
from akasha_ray.replication.local_s3 import LocalS3, credentials_env

AKASHA_BIN = str(Path(sys.executable).with_name("akasha"))
UP_TIMEOUT_S = 600.0
# Cheaper regions on a small machine: no scheduled migration, a fixed hot window.
REGION_SETTINGS: dict[str, Any] = {
    "tiers": {"migrate_every_s": 0, "hot_target_p95_ms": None},
}


@dataclass
class LocalRegion:
    name: str
    role: str  # primary | secondary | backup (the role it starts in)
    folder: Path
    port: int | None = None  # HTTP port; None for a backup region
    s3: LocalS3 = field(init=False)
    admin_key: str | None = None
    head_ids: list[str] = field(default_factory=list)
    up_output: str = ""

    def __post_init__(self) -> None:
        self.s3 = LocalS3(folder=self.folder / "s3", bucket=f"akasha-dr-{self.name}")

    @property
    def serves(self) -> bool:
        return self.port is not None

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def bucket_url(self) -> str:
        return f"s3://{self.s3.bucket}"

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "url": self.url,
            "bucket": self.bucket_url,
            "endpoint_url": self.s3.endpoint_url,
        }

    def env(self) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "AKASHA_CONFIG"}
            and not k.startswith("AKASHA_")
        }
        return (
            base
            | credentials_env()
            | {
                "RAY_TMPDIR": str(self.folder),
                "RAY_AUTH_TOKEN_PATH": str(self.folder / "auth_token"),
                "AKASHA_CONFIG": str(self.folder / "akasha.yaml"),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )

    def write_config(self, regions: list[LocalRegion], mode: str, extra: dict[str, Any]) -> None:
        settings = {
            **REGION_SETTINGS,
            "data_dir": str(self.data_dir),
            "namespace": f"akasha-dr-{self.name}",
            "serve": {"port": self.port},
            "dr": {
                "region": self.name,
                "mode": mode,
                "regions": [r.config() for r in regions],
                **extra,
            },
        }
        (self.folder / "akasha.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))

    def up(self) -> subprocess.Popen:
        """`akasha up` in the background; `finish_up` waits for it."""
        log = (self.folder / "up.log").open("wb")
        return subprocess.Popen(
            [AKASHA_BIN, "up"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )

    def wait_head(self, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
        """Until `akasha up` has started this region's Ray head (or has ended)."""
        deadline = time.monotonic() + timeout_s
        marker = self.data_dir / local_cluster.MARKER
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        self._note_head()

    def _note_head(self) -> None:
        """Remember the head `akasha up` started (its marker), so that it can be stopped."""
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            marker = json.loads((self.data_dir / local_cluster.MARKER).read_text())
            if "head_id" in marker and marker["head_id"] not in self.head_ids:
                self.head_ids.append(marker["head_id"])

    def finish_up(self, proc: subprocess.Popen) -> None:
        try:
            code = proc.wait(timeout=UP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        self.up_output = (self.folder / "up.log").read_text(errors="replace")
        self._note_head()
        if code != 0:
            raise Unavailable(
                f"`akasha up` of region {self.name} failed ({code}): {self.up_output[-3000:]}"
            )
        self.admin_key = (self.data_dir / "admin.key").read_text().strip()

    def pids(self) -> list[int]:
        return [pid for head in self.head_ids for pid in local_cluster.head_pids(head)]

    def kill(self) -> int:
        """`kill -9` of every process of this region's Ray head (GCS, raylet, every actor and
        Serve replica) and of its S3 endpoint. Returns how many processes were killed."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        alive_s3 = self.s3.alive()
        self.s3.kill()
        return len(pids) + int(alive_s3)

    def revive(self) -> None:
        """After `kill`: its S3 endpoint again (same port, what its disk kept), then `akasha up`
        on its data dir (a new Ray head replaces the dead one)."""
        self.s3.start()
        self.finish_up(self.up())

    def down(self) -> None:
        """Stop everything of this region (its data is the drill's, thrown away after: no
        orderly `akasha down` needed)."""
        for head in self.head_ids:
            local_cluster.stop_head(head, grace_s=5.0)
        self.s3.stop()


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"


class LocalRegions:
    """Start primary, secondary and backup regions; stop (or kill) them; clean up."""

    def __init__(
        self,
        folder: Path,
        names: tuple[str, str, str] = ("east", "west", "north"),
        mode: str = "async",
        dr_settings: dict[str, Any] | None = None,
    ) -> None:
        self.folder = folder
        self.mode = mode
        self.dr_settings = dr_settings or {}
        ports = free_ports(2)
        roles = ("primary", "secondary", "backup")
        self.regions = [
            LocalRegion(name, role, folder / name, port)
            for name, role, port in zip(names, roles, [*ports, None], strict=True)
        ]

    def __getitem__(self, name: str) -> LocalRegion:
        return next(r for r in self.regions if r.name == name)

    def by_role(self, role: str) -> LocalRegion:
        return next(r for r in self.regions if r.role == role)

    def start(self, say=lambda _: None) -> None:
        for region in self.regions:
            region.folder.mkdir(parents=True, exist_ok=True)
            region.s3.start()
            say(f"region {region.name}: S3 endpoint {region.s3.endpoint_url} ({region.role})")
        for region in self.regions:
            region.write_config(self.regions, self.mode, self.dr_settings)
        # Both at once: the witness is created if absent naming the configured primary, by
        # whichever region comes first.
        started = time.monotonic()
        procs = []
        for region in (r for r in self.regions if r.serves):
            procs.append((region, region.up()))
            # The next `ray start` only once this one holds its ports: both would otherwise
            # find Ray's usual ports free and race for them.
            region.wait_head(procs[-1][1])
        failed = []
        for region, proc in procs:  # wait for each, so that every head started is known
            try:
                region.finish_up(proc)
            except Unavailable as exc:
                failed.append((region, exc))
                continue
            say(f"region {region.name}: serving on {region.url} ({_since(started)})")
        # Once more, alone: on a loaded machine `ray start` may time out (seen at load 70).
        for region, exc in failed:
            say(f"region {region.name}: `akasha up` failed, once more: {str(exc)[-300:]}")
            region.down()
            region.s3.start()
            region.finish_up(region.up())
            say(f"region {region.name}: serving on {region.url} ({_since(started)})")

    def stop(self) -> None:
        for region in self.regions:
            region.down()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
