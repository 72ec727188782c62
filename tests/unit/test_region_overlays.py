"""The per-region KubeRay overlays (cluster/regions/<name>/): rendered as kustomize would (the
base volume and RayService, the `dr` component's JSON 6902 operations, the generated ConfigMap),
each validates against KubeRay's CRD with unknown fields refused, carries its region's settings
(valid Akasha DR settings, this region named, the same regions everywhere) into the head and
every worker, and holds no secret. Where `kubectl` is installed, its kustomize renders the same."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from akasha_ray.config import DrConfig
from tests.unit.test_cluster_manifests import _crd_schema

REGIONS = Path(__file__).resolve().parents[2] / "cluster" / "regions"
SERVING = ("east", "west")
CONFIG_PATH = "/etc/akasha/akasha.yaml"


def _load_all(path: Path) -> list[dict[str, Any]]:
    # Through JSON: a YAML alias (`env: *akasha-env`) becomes a copy, as kustomize reads it, not
    # one list shared by the head and the workers.
    return [json.loads(json.dumps(d)) for d in yaml.safe_load_all(path.read_text()) if d]


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _apply(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON 6902 `add` (the only operation the overlays use): a missing parent is an error."""
    document = copy.deepcopy(document)
    for operation in operations:
        assert operation["op"] == "add", operation
        *parents, last = _pointer(operation["path"])
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        else:
            node[last] = operation["value"]
    return document


def _render(region: str) -> list[dict[str, Any]]:
    folder = REGIONS / region
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    documents = [d for r in kustomization["resources"] for d in _load_all(folder / r)]
    for component in kustomization.get("components", []):
        spec = yaml.safe_load((folder / component / "kustomization.yaml").read_text())
        assert spec["kind"] == "Component"
        for patch in spec["patches"]:
            target = patch["target"]
            operations = yaml.safe_load((folder / component / patch["path"]).read_text())
            documents = [
                _apply(d, operations)
                if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
                else d
                for d in documents
            ]
    for generator in kustomization.get("configMapGenerator", []):
        data = {f: (folder / f).read_text() for f in generator["files"]}
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    labels = {k: v for group in kustomization.get("labels", []) for k, v in group["pairs"].items()}
    for document in documents:
        document["metadata"].setdefault("labels", {}).update(labels)
    return documents


def _one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


def _pod_specs(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [g["template"]["spec"] for g in groups]


def _dr(region: str) -> DrConfig:
    settings = yaml.safe_load((REGIONS / region / "akasha.yaml").read_text())
    assert set(settings) == {"dr"}, "the overlay's file carries the DR settings only"
    return DrConfig.model_validate(settings["dr"])


def test_every_region_has_an_overlay_or_says_why_not():
    dr = _dr(SERVING[0])
    names = {r.name for r in dr.regions}
    assert {p.name for p in REGIONS.iterdir() if p.is_dir()} == names | {"dr"}
    for region in dr.regions:
        if region.role == "backup":  # serves nothing: its bucket only, explained
            assert (REGIONS / region.name / "README.md").exists()
            assert not (REGIONS / region.name / "kustomization.yaml").exists()
        else:
            assert region.name in SERVING


@pytest.mark.parametrize("region", SERVING)
def test_overlay_matches_kuberays_crd(region):
    service = _one(_render(region), "RayService")
    jsonschema.Draft7Validator(_crd_schema("rayservices")).validate(service)


def test_the_strict_schema_rejects_a_misplaced_patch():
    service = _one(_render("east"), "RayService")
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["envFrom"] = []
    with pytest.raises(jsonschema.ValidationError, match="envFrom"):
        jsonschema.Draft7Validator(_crd_schema("rayservices")).validate(service)


@pytest.mark.parametrize("region", SERVING)
def test_overlay_names_its_region_with_the_same_regions_everywhere(region):
    dr = _dr(region)
    assert dr.region == region and dr.enabled
    assert dr.regions == _dr(SERVING[0]).regions
    assert dr.witness_region().role == "backup"
    assert all(r.bucket.startswith("s3://") for r in dr.regions)
    config_map = _one(_render(region), "ConfigMap")
    on_disk = yaml.safe_load((REGIONS / region / "akasha.yaml").read_text())
    assert yaml.safe_load(config_map["data"]["akasha.yaml"]) == on_disk


@pytest.mark.parametrize("region", SERVING)
def test_head_and_every_worker_read_the_region_config_and_s3_credentials(region):
    documents = _render(region)
    service = _one(documents, "RayService")
    config_map = _one(documents, "ConfigMap")
    for pod in _pod_specs(service):
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert len(env) == len(container["env"]), "a variable set twice"
        assert env["AKASHA_CONFIG"]["value"] == CONFIG_PATH
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        mount = mounts[str(Path(CONFIG_PATH).parent)]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
        assert {"secretRef": {"name": "akasha-dr-s3"}} in container["envFrom"]
        # The base's settings stay: data dir, admin key from its Secret.
        assert env["AKASHA_DATA_DIR"]["value"] == "/data/akasha"
        assert "secretKeyRef" in env["AKASHA_ADMIN_KEY"]["valueFrom"]
    assert service["metadata"]["labels"]["akasha.io/region"] == region


@pytest.mark.parametrize("region", SERVING)
def test_overlay_holds_no_secret(region):
    text = "\n".join(p.read_text() for p in (REGIONS / region).iterdir())
    text += (REGIONS / "dr" / "patch.yaml").read_text()
    for word in ("AWS_SECRET_ACCESS_KEY:", "aws_secret_access_key", "password:", "token:"):
        assert word not in text


@pytest.mark.parametrize("region", SERVING)
def test_kubectl_kustomize_renders_the_same(region):
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # not installed by tests/servers/install.sh: the renderer is the check
        return
    done = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(REGIONS / region)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    theirs = {d["kind"]: d for d in yaml.safe_load_all(done.stdout) if d}
    ours = {d["kind"]: d for d in _render(region)}
    assert set(theirs) == set(ours)
    assert theirs["RayService"]["spec"] == ours["RayService"]["spec"]
    assert theirs["ConfigMap"]["data"] == ours["ConfigMap"]["data"]
