"""`serve run serve_apps/akasha.yaml` deploys the same application as `akasha up`."""

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from akasha_ray.config import load

pytestmark = pytest.mark.e2e
CONFIG = Path(__file__).resolve().parents[2] / "serve_apps" / "akasha.yaml"


def test_serve_config_is_valid_and_builds(tmp_path, monkeypatch):
    schema = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    [application] = schema.applications
    assert application.import_path == "serve_apps.app:build"
    monkeypatch.setenv("AKASHA_DATA_DIR", str(tmp_path))
    from serve_apps.app import build

    app = build({"hot": {"shards": 3}})
    assert type(app).__name__ == "Application"
    assert load().data_dir == tmp_path.resolve()
