"""The KubeRay manifests deploy the same application as the Serve config file."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_rayservice_matches_the_serve_config():
    service = yaml.safe_load((ROOT / "cluster" / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = yaml.safe_load((ROOT / "serve_apps" / "akasha.yaml").read_text())
    assert serve_config["applications"] == local["applications"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    env = {e["name"] for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"AKASHA_DATA_DIR", "AKASHA_ADMIN_KEY"} <= env


def test_rayjob_runs_the_ingest_module():
    job = yaml.safe_load((ROOT / "cluster" / "rayjob-ingest.yaml").read_text())
    assert job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("python -m akasha_ray.jobs.ingest --source ")
    import akasha_ray.jobs.ingest  # noqa: F401  (the entrypoint's module exists)
