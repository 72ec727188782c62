"""Serve autoscaling (serve.autoscaling): under concurrent searches over HTTP the ingress and the
embedder get more replicas, and fewer again once the load stops; the replica counts are read
over time by the benchmarks' sampler (akasha_ray/bench/replicas.py). The RayService manifest
turns it on through its pods' environment, which the builder reads.

The Serve side runs in a driver of its own, on a local Ray cluster of its own: Serve's metric
push intervals (10 s by default) are environment variables its controller and proxy read at
start, shortened here along with the delays so that the test takes a minute, not ten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from akasha_ray import config
from akasha_ray.bench.replicas import ReplicaSampler
from akasha_ray.errors import ConfigError
from akasha_ray.ports import free_port
from serve_apps.app import bind

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

SCALING = {
    "AKASHA_SERVE__AUTOSCALING__MIN_REPLICAS": "1",
    "AKASHA_SERVE__AUTOSCALING__MAX_REPLICAS": "2",
    "AKASHA_SERVE__AUTOSCALING__TARGET_ONGOING_REQUESTS": "2",
    "AKASHA_SERVE__AUTOSCALING__UPSCALE_DELAY_S": "1",
    "AKASHA_SERVE__AUTOSCALING__DOWNSCALE_DELAY_S": "3",
    "AKASHA_SERVE__AUTOSCALING__LOOK_BACK_PERIOD_S": "2",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}

DRIVER = """
import json, sys, threading, time
from pathlib import Path
from akasha_ray.bench.replicas import ReplicaSampler, serve_status
from akasha_ray.bench.served import served_akasha

data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
phases = {}
errors = []


def grown(sampler):
    last = sampler.samples[-1]["replicas"] if sampler.samples else {}
    return last.get("api", 0) >= 2


def settled(sampler):
    last = sampler.samples[-1]["replicas"] if sampler.samples else {}
    return last.get("api") == 1 and last.get("embedder") == 1


def wait(sampler, done, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not done(sampler) and time.monotonic() < deadline:
        time.sleep(0.5)
    return done(sampler)


with served_akasha(data_dir, port=port, cpus=4) as http:
    memories = [
        {"system_id": "scale", "conversation_id": "c", "content": f"note {i} about autoscaling"}
        for i in range(40)
    ]
    assert http.post("/v1/memories", json={"memories": memories}).status_code == 201
    stop = threading.Event()
    answered = []

    def client(n):
        while not stop.is_set():
            body = {"query": f"note {n} scaling", "system_ids": ["scale"], "limit": 5}
            status = http.post("/v1/search", json=body).status_code
            (answered if status == 200 else errors).append(status)

    with ReplicaSampler(serve_status(), interval_s=0.5) as sampler:
        time.sleep(1)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        phases["grew"] = wait(sampler, grown, 120)
        phases["load_s"] = sampler.samples[-1]["t_s"]
        stop.set()
        for thread in threads:
            thread.join()
        phases["settled"] = wait(sampler, settled, 120)
    result = {"phases": phases, "answered": len(answered), "errors": errors, **sampler.report()}
# After the block: inside it stdout goes to stderr (Ray prints there).
print(json.dumps(result))
"""


def test_replicas_grow_under_load_and_shrink_after(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKASHA_", "RAY_ADDRESS"))}
    env |= SCALING
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path / "data"), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    assert report["errors"] == [] and report["answered"] > 0
    assert report["phases"] == {"grew": True, "load_s": report["phases"]["load_s"], "settled": True}
    api, embedder = report["deployments"]["api"], report["deployments"]["embedder"]
    assert api["first"] == 1 and api["max"] == 2 and api["last"] == 1
    assert embedder["max"] <= 2 and embedder["last"] == 1
    # Up, then down: the count rose to 2 before it came back to 1.
    counts = [c["replicas"] for c in api["changes"]]
    assert counts.index(2) < len(counts) - 1 and counts[-1] == 1


def test_rayservice_turns_autoscaling_on_for_both_deployments(monkeypatch):
    """The pods' AKASHA_SERVE__AUTOSCALING__* reach the builder: both deployments autoscale
    within the manifest's bounds, their target within the ingress's admission bounds."""
    service = yaml.safe_load((ROOT / "cluster" / "rayservice.yaml").read_text())
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in head["containers"][0]["env"] if "value" in e}
    scaling = {k: v for k, v in env.items() if k.startswith("AKASHA_SERVE__AUTOSCALING__")}
    assert scaling, "the RayService sets no serve.autoscaling"
    for name, value in scaling.items():
        monkeypatch.setenv(name, value)
    settings = config.load()
    assert settings.serve.autoscaling is not None
    ingress = bind(settings)._bound_deployment
    (embedder,) = [
        a._bound_deployment for a in ingress.init_args if hasattr(a, "_bound_deployment")
    ]
    for deployment in (ingress, embedder):
        options = deployment._deployment_config
        assert options.autoscaling_config.max_replicas == settings.serve.autoscaling.max_replicas
        assert options.autoscaling_config.target_ongoing_requests <= options.max_ongoing_requests
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert all(group["template"]["spec"]["containers"][0]["env"] for group in workers)


def test_fixed_replicas_unless_autoscaling_is_set():
    fixed = bind(config.load(serve={"ingress_replicas": 2}))._bound_deployment._deployment_config
    assert fixed.num_replicas == 2 and fixed.autoscaling_config is None


@pytest.mark.parametrize(
    ("scaling", "field"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
        ({"target_ongoing_requests": 33}, "target_ongoing_requests"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_autoscaling_settings_out_of_bounds_are_refused(scaling, field):
    with pytest.raises(ConfigError, match=field):
        config.load(serve={"max_ongoing_requests": 32, "autoscaling": scaling})


def test_sampler_reports_changes_and_keeps_failed_reads_apart():
    """The sampler's own bookkeeping (its reads come from Serve in the test above): a failed
    read is a gap with its error, never a made-up count."""
    answers = iter([{"api": 1}, OSError("dashboard restarting"), {"api": 2}, {"api": 2}])

    def read() -> dict[str, int]:
        answer = next(answers, {"api": 1})
        if isinstance(answer, Exception):
            raise answer
        return answer

    sampler = ReplicaSampler(read, interval_s=0.01).start()
    deadline = time.monotonic() + 30
    while len(sampler.samples) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    report = sampler.stop().report()
    api = report["deployments"]["api"]
    assert [c["replicas"] for c in api["changes"]] == [1, 2, 1]
    assert (api["first"], api["min"], api["max"], api["last"]) == (1, 1, 2, 1)
    assert [e["error"] for e in report["failed_reads"]] == ["OSError: dashboard restarting"]
    assert len(report["samples"]) == len(sampler.samples) >= 5
