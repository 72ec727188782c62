"""A real Akasha for the end-to-end tests: `akasha up` on the session's Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from akasha_ray.client import AkashaClient
from akasha_ray.ports import free_port
from tests.conftest import VENV_BIN


@pytest.fixture(scope="session")
def akasha(ray_cluster, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("akasha-e2e")
    port = free_port()
    env = {
        **os.environ,
        "AKASHA_DATA_DIR": str(data_dir),
        "AKASHA_RAY_ADDRESS": ray_cluster["gcs_address"],
        "AKASHA_NAMESPACE": "akasha-e2e",
        "AKASHA_SERVE__PORT": str(port),
        # A fixed hot window: the tests place memories by age, whatever this machine's latency.
        "AKASHA_TIERS__HOT_TARGET_P95_MS": "null",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    akasha_bin = str(Path(sys.executable).with_name("akasha"))
    started = subprocess.run(
        [akasha_bin, "up"], env=env, capture_output=True, text=True, timeout=600
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"Akasha is serving on http://127.0.0.1:{port}" in started.stdout
    admin_key = (data_dir / "admin.key").read_text().strip()
    assert f"Admin key (shown once): {admin_key}" in started.stdout
    yield {
        "url": f"http://127.0.0.1:{port}",
        "admin_key": admin_key,
        "env": env,
        "data_dir": data_dir,
        "akasha_bin": akasha_bin,
        **ray_cluster,
    }
    # Cleanup, not a check (tests/e2e/test_security_defaults.py tests `akasha down`): once, in a
    # fresh-clone CI run, Serve's app deletion hung past 300 s here; the session's Ray cluster
    # is shut down after this anyway.
    try:
        subprocess.run([akasha_bin, "down"], env=env, capture_output=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        print(f"akasha down did not finish in 300 s: {(exc.stderr or b'')[-2000:]!r}")


@pytest.fixture(scope="session")
def admin(akasha):
    with AkashaClient(akasha["url"], akasha["admin_key"]) as client:
        yield client


def pytest_collection_modifyitems(items):
    """The fuzz suite writes random memories, entities and metrics into the shared deployment:
    it runs after every other e2e test."""
    fuzz = [item for item in items if item.path.name == "test_fuzz.py"]
    rest = [item for item in items if item.path.name != "test_fuzz.py"]
    e2e = [n for n, item in enumerate(rest) if "e2e" in item.path.parts]
    cut = e2e[-1] + 1 if e2e else len(rest)
    items[:] = rest[:cut] + fuzz + rest[cut:]
