"""The KubeRay manifests deploy the same application as the Serve config file, validate against
KubeRay's own CRDs (unknown fields refused) and the operator's own rules that matter here, keep
Ray's token authentication on with no dashboard published; the image's Dockerfile passes hadolint
and installs what the manifests run; Helm values size the stores as the plan does; the Grafana
dashboard asks only for series Akasha exports."""

from __future__ import annotations

import functools
import json
import lzma
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

from akasha_ray import observability
from akasha_ray.ray_internals import SERVE_THROUGHPUT_ENV
from tests.conftest import VENV_BIN

ROOT = Path(__file__).resolve().parents[2]
CRDS = Path(__file__).resolve().parent / "kuberay_crds"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MANIFESTS = {
    "rayservice.yaml": "rayservices",
    "rayjob-ingest.yaml": "rayjobs",
    "rayjob-migrate.yaml": "rayjobs",
    "raycluster.yaml": "rayclusters",
}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


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


def _cluster_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    spec = manifest["spec"]
    return spec if manifest["kind"] == "RayCluster" else spec.get("rayClusterConfig")


def _containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    pods = [spec["submitterPodTemplate"]] if "submitterPodTemplate" in spec else []
    cluster = _cluster_spec(manifest)
    if cluster:
        pods.append(cluster["headGroupSpec"]["template"])
        pods += [group["template"] for group in cluster.get("workerGroupSpecs", [])]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def test_every_manifest_in_the_folder_is_checked():
    assert {p.name for p in (ROOT / "cluster").glob("ray*.yaml")} == set(MANIFESTS)


@pytest.mark.parametrize(("name", "plural"), sorted(MANIFESTS.items()))
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


def test_the_strict_schema_rejects_a_misplaced_autoscaler_field():
    cluster = _manifest("raycluster.yaml")
    cluster["spec"]["autoscalerOptions"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.Draft7Validator(_crd_schema("rayclusters")).validate(cluster)


def test_serve_config_v2_is_a_valid_serve_deploy_config():
    serve_config = yaml.safe_load(_manifest("rayservice.yaml")["spec"]["serveConfigV2"])
    deploy = ServeDeploySchema.model_validate(serve_config)
    # Ray's schemas ignore unknown keys (a typo would silently do nothing): refuse them here.
    assert set(serve_config) <= set(ServeDeploySchema.model_fields)
    assert set(serve_config["http_options"]) <= set(HTTPOptionsSchema.model_fields)
    for app in serve_config["applications"]:
        assert set(app) <= set(ServeApplicationSchema.model_fields)
    local = yaml.safe_load((ROOT / "serve_apps" / "akasha.yaml").read_text())
    http = deploy.http_options
    assert http.host == "0.0.0.0" and http.port == 8000  # reached through the Serve service
    assert http.request_timeout_s == local["http_options"].get("request_timeout_s")
    assert deploy.proxy_location.value == "EveryNode"


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_worker_groups_scale_within_their_bounds(name):
    """validation.go: minReplicas <= replicas <= maxReplicas for every worker group."""
    cluster = _cluster_spec(_manifest(name))
    for group in (cluster or {}).get("workerGroupSpecs", []):
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayservice_keeps_gcs_state_in_an_external_redis():
    cluster = _manifest("rayservice.yaml")["spec"]["rayClusterConfig"]
    ft = cluster["gcsFaultToleranceOptions"]
    assert ft["redisAddress"].startswith("redis://")
    # The password comes from a Secret, never a literal in the manifest.
    assert set(ft["redisPassword"]) == {"valueFrom"}
    assert set(ft["redisPassword"]["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    # validation.go refuses GCS FT configured twice (old annotation, env or start params).
    head = cluster["headGroupSpec"]
    assert "redis-password" not in head["rayStartParams"]
    for container in _containers(_manifest("rayservice.yaml")):
        names = {e["name"] for e in container.get("env", [])}
        assert not names & {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "RAY_external_storage_namespace"}
    assert "ray.io/ft-enabled" not in _manifest("rayservice.yaml")["metadata"].get(
        "annotations", {}
    )


def test_raycluster_autoscales_with_autoscaler_v2_and_an_idle_head():
    cluster = _manifest("raycluster.yaml")
    assert cluster["kind"] == "RayCluster"
    spec = cluster["spec"]
    assert (
        spec["rayVersion"] == _manifest("rayservice.yaml")["spec"]["rayClusterConfig"]["rayVersion"]
    )
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["authOptions"] == {"mode": "token", "secretName": "akasha-ray-token"}
    (group,) = spec["workerGroupSpecs"]
    assert group["maxReplicas"] > group["minReplicas"]
    assert group["template"]["spec"]["restartPolicy"] == "Never"  # v2 replaces failed pods


def test_rayjob_migrate_runs_a_pass_on_the_services_cluster():
    job = _manifest("rayjob-migrate.yaml")
    assert job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("python -m akasha_ray.jobs.migrate")
    import akasha_ray.jobs.migrate  # noqa: F401  (the entrypoint's module exists)


@pytest.mark.parametrize("name", ["rayjob-ingest.yaml", "rayjob-migrate.yaml"])
def test_rayjobs_join_the_service_cluster_and_never_delete_it(name):
    """validation.go: a job with a clusterSelector has no cluster spec and may not shut the
    selected cluster down; the submitter sends the service's token."""
    spec = _manifest(name)["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": "akasha"}
    assert "rayClusterSpec" not in spec
    assert spec["shutdownAfterJobFinishes"] is False
    (submitter,) = spec["submitterPodTemplate"]["spec"]["containers"]
    env = {e["name"]: e for e in submitter["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "akasha-ray-token"


# -- the image ------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "cluster" / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_passes_hadolint():
    done = subprocess.run(
        [str(Path(VENV_BIN) / "hadolint"), "--failure-threshold", "info", "cluster/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifests_run_the_image_the_dockerfile_builds(name):
    version = PYPROJECT["project"]["version"]
    for container in _containers(_manifest(name)):
        assert container["image"] == f"akasha:{version}"
    cluster = _cluster_spec(_manifest(name))
    if cluster:
        (base,) = [args for op, args in _dockerfile() if op == "FROM"]
        assert base == f"rayproject/ray:{cluster['rayVersion']}-py311"


def test_dockerfile_installs_the_package_with_the_cpu_torch_pin():
    steps = _dockerfile()
    runs = [args for op, args in steps if op == "RUN"]
    (torch_pin,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    torch = next(i for i, r in enumerate(runs) if torch_pin in r)
    assert "download.pytorch.org/whl/cpu" in runs[torch]
    commands = [[c.strip() for c in r.split("&&")] for r in runs]
    package = next(
        i for i, c in enumerate(commands) if c[0].startswith("pip install") and c[0].endswith(" .")
    )
    assert torch < package  # torch first, so pip keeps the CPU build
    # Then the default (ONNX) encoder is exported into the image, not on each pod's start.
    assert any("Embedder().embed" in c for c in commands[package][1:])
    copied = {args.split()[-2].rstrip("/") for op, args in steps if op == "COPY"}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied
    assert {"pyproject.toml", "README.md"} <= {
        part for op, args in steps if op == "COPY" for part in args.split()[1:-1]
    }
    for path in copied - {"pyproject.toml", "README.md"}:
        assert (ROOT / path).is_dir(), path


def test_the_image_runs_serve_as_akasha_up_does():
    env = dict(
        pair.split("=", 1) for op, args in _dockerfile() if op == "ENV" for pair in args.split()
    )
    assert {name: env.get(name) for name in SERVE_THROUGHPUT_ENV} == SERVE_THROUGHPUT_ENV


# -- Helm values ----------------------------------------------------------------------------------


def _values(name: str) -> tuple[str, dict[str, Any]]:
    text = (ROOT / "cluster" / "helm" / name).read_text()
    return text, yaml.safe_load(text)


@pytest.mark.parametrize(
    ("name", "chart"),
    [
        ("milvus-values.yaml", "`milvus/milvus`"),
        ("timescaledb-values.yaml", "`timescale/timescaledb-single`"),
        ("neo4j-values.yaml", "`neo4j/neo4j`"),
        ("redis-values.yaml", "`bitnami/redis`"),
    ],
)
def test_helm_values_name_their_chart_and_hold_no_secret(name, chart):
    text, values = _values(name)
    assert chart in text.splitlines()[0]

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for child, value in node.items():
                walk(value, child)
        elif (
            isinstance(node, str)
            and re.search(r"(?i)password|secretkey|accesskey|token", key)
            and not re.search(r"(?i)existingsecret|fromsecret|secretname", key)  # a Secret's name
        ):
            pytest.fail(f"{name}: {key} holds a literal secret")

    walk(values, "")


def test_milvus_is_sized_as_the_plan_says():
    _, values = _values("milvus-values.yaml")
    assert values["cluster"]["enabled"] is True
    for component in ("proxy", "queryNode", "dataNode", "indexNode"):
        assert values[component]["replicas"] == 3, component
    assert values["etcd"]["replicaCount"] == 3
    pulsar = values["pulsarv3"]
    assert pulsar["enabled"] is True
    for role in ("zookeeper", "bookkeeper", "broker", "proxy"):
        assert pulsar[role]["replicaCount"] == 3, role
    assert not values["pulsar"]["enabled"] and not values["kafka"]["enabled"]
    assert values["minio"]["enabled"] is True and values["minio"]["existingSecret"]
    # DiskANN: query nodes load disk indexes, index nodes build them on disk.
    assert values["queryNode"]["disk"]["enabled"] and values["indexNode"]["disk"]["enabled"]
    user = yaml.safe_load(values["extraConfigFiles"]["user.yaml"])
    assert user["queryNode"]["enableDisk"] is True
    assert "DiskIndex" in user["common"]


# -- Grafana --------------------------------------------------------------------------------------


def _exported_series() -> set[str]:
    """Every sample name Akasha's /metrics can show."""
    m = observability._Metrics()
    names: set[str] = set()
    for metric in vars(m).values():
        name = metric._name
        if type(metric).__name__ == "Histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        else:
            names.add(name)
    for family in observability.health_families({"components": {}}):
        names.add(family.name)
    names.add("akasha_metrics_nodes")
    return names


def test_grafana_dashboard_uses_only_exported_series():
    dashboard = json.loads((ROOT / "cluster" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bakasha_[a-z_]+", expr)}
    assert used and used <= _exported_series(), used - _exported_series()
    # Every series an operator needs has a panel.
    for wanted in (
        "akasha_http_request_seconds_bucket",
        "akasha_tier_search_seconds_bucket",
        "akasha_memories_ingested_total",
        "akasha_memories_migrated_total",
        "akasha_component_up",
        "akasha_replication_lag_seconds",
        "akasha_admission_requests",
        "akasha_admission_refused_total",
    ):
        assert wanted in used, wanted
