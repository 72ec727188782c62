"""A short fleet run (`python -m akasha_ray.bench fleet`, issue #12): 100 systems with their own
scoped keys under a locust mix of ingest, search (hot, warm, cold), metrics and graph calls, with
the warm, time-series, graph and cold stores on real servers (Milvus 2.3.5, PostgreSQL 15,
FalkorDB's Bolt, SeaweedFS S3) and one fault of every kind on a schedule: `kill -9` of a hot
shard, the warm, timeseries, graph and migrator actors and the embedder replica, and each server
stopped (SIGSTOP) for 10 s; the load goes on until the last fault recovered. (Milvus 2.3.5
standalone exits when a stop outlasts its etcd session ttl: tests/servers sets 120 s, not the
default 30 s, so the full run's 30 s stops end no server.)

Expected: every fault recovered without a hand, no 5xx other than 503 (during a fault or not),
and the audit finds every acknowledged memory, metric point and relationship."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from akasha_ray.bench import fleet_faults

pytestmark = pytest.mark.e2e

COMMAND = [
    *(sys.executable, "-m", "akasha_ray.bench", "fleet"),
    *("--systems", "100", "--duration", "90", "--users", "6"),
    *("--faults", "all", "--stop-s", "10", "--warmup", "15"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    done = subprocess.run(
        [*COMMAND, "--out", str(out)], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-6000:]
    found = json.loads(done.stdout)
    print(json.dumps({k: v for k, v in found.items() if k != "machine"}, indent=1))
    return found


def test_every_fault_is_injected_and_recovers_by_itself(report):
    faults = {f["fault"]: f for f in report["faults"]}
    assert sorted(faults) == sorted(fleet_faults.KILLS + fleet_faults.STOPS)
    for name, fault in faults.items():
        assert "skipped" not in fault, fault
        assert fault["recovered"], fault
        if fault["kind"] == "kill -9":
            assert fault["restarted"], f"{name}: the killed process is still the one running"


def test_no_5xx_but_503_and_every_request_answered(report):
    assert report["5xx_not_503"] == 0, report["error_answers"]
    assert report["no_answer"] == 0, "a request got no answer: Akasha's deadlines did not hold"
    for fault in report["faults"]:
        assert fault["window"]["5xx_not_503"] == 0, fault


def test_the_audit_finds_every_acknowledged_write(report):
    audit = report["audit"]
    assert audit["lost_writes"] == 0, audit
    for part in ("memories", "metric_points", "relationships"):
        assert audit[part]["acknowledged"] > 0, f"no {part} were written: the mix did not run"
        assert audit[part]["lost"] == 0, audit[part]
        assert audit[part]["unreadable"] == 0, audit[part]
    assert audit["metric_points"]["stored_more_than_sent"] == 0


def test_the_mix_reached_every_route(report):
    routes = report["routes"]
    for route in (
        "ingest[10]",
        "ingest[100]",
        "search hot",
        "search hot+warm",
        "search with cold",
        "metrics write",
        "metrics 5m",
        "metrics 1h",
        "graph entities",
        "graph relationships",
        "graph path",
    ):
        assert routes.get(route, {}).get("requests", 0) > 0, f"{route} never ran"
    assert report["requests_per_s"] > 0
