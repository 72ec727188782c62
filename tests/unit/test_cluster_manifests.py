"""The KubeRay manifests deploy the same application as the Serve config file, validate against
KubeRay's own CRDs, and keep Ray's token authentication on with no dashboard published."""

from __future__ import annotations

import functools
import lzma
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = Path(__file__).resolve().parent / "kuberay_crds"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cluster" / name).read_text())


def _strict(schema: Any) -> Any:
    """The CRD's OpenAPI schema as JSON Schema that rejects fields the CRD does not list."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@functools.cache
def _crd_schema(plural: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a megabyte of YAML each
    crd = yaml.load(lzma.decompress((CRDS / f"ray.io_{plural}.yaml.xz").read_bytes()), loader)
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(v1["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize(
    ("name", "plural"),
    [("rayservice.yaml", "rayservices"), ("rayjob-ingest.yaml", "rayjobs")],
)
def test_manifests_match_kuberays_crds(name, plural):
    jsonschema.Draft7Validator(_crd_schema(plural)).validate(_manifest(name))


def test_the_strict_schema_rejects_a_misspelt_field():
    service = _manifest("rayservice.yaml")
    service["spec"]["rayClusterConfig"]["authOption"] = {"mode": "token"}
    with pytest.raises(jsonschema.ValidationError, match="authOption"):
        jsonschema.Draft7Validator(_crd_schema("rayservices")).validate(service)


def test_rayservice_matches_the_serve_config():
    service = _manifest("rayservice.yaml")
    assert service["kind"] == "RayService"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = yaml.safe_load((ROOT / "serve_apps" / "akasha.yaml").read_text())
    assert serve_config["applications"] == local["applications"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    env = {e["name"] for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"AKASHA_DATA_DIR", "AKASHA_ADMIN_KEY"} <= env


def test_rayservice_runs_with_token_auth_and_publishes_no_dashboard():
    cluster = _manifest("rayservice.yaml")["spec"]["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "akasha-ray-token"}
    head = cluster["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress", False)
    if head["rayStartParams"].get("dashboard-host", "0.0.0.0") not in LOOPBACK:
        assert cluster["authOptions"]["mode"] == "token"  # reachable, so never unauthenticated
    pods = [head["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        assert not pod["spec"].get("hostNetwork", False)
        for container in pod["spec"]["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            # The operator sets these from authOptions; one set by hand could turn auth off.
            assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
            assert all("hostPort" not in port for port in container.get("ports", []))


def test_rayjob_runs_the_ingest_module():
    job = _manifest("rayjob-ingest.yaml")
    assert job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("python -m akasha_ray.jobs.ingest --source ")
    import akasha_ray.jobs.ingest  # noqa: F401  (the entrypoint's module exists)


def test_rayjob_submitter_sends_the_services_token():
    job = _manifest("rayjob-ingest.yaml")
    cluster = _manifest("rayservice.yaml")["spec"]["rayClusterConfig"]
    (submitter,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    env = {e["name"]: e for e in submitter["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": cluster["authOptions"]["secretName"], "key": "auth_token"}
    assert job["spec"]["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
