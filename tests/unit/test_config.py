import pytest

from akasha_ray import config
from akasha_ray.errors import ConfigError


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = config.load()
    assert settings.data_dir == (tmp_path / "akasha-data").resolve()
    assert settings.hot.shards == 2
    assert settings.tiers.hot_days == 7 and settings.tiers.warm_days == 90
    assert settings.warm.backend == "milvus" and settings.graph.backend == "duckdb"


def test_yaml_then_environment_then_arguments(tmp_path, monkeypatch):
    path = tmp_path / "akasha.yaml"
    path.write_text("hot:\n  shards: 4\nserve:\n  port: 9000\ndata_dir: /tmp/from-yaml\n")
    monkeypatch.setenv("AKASHA_CONFIG", str(path))
    monkeypatch.setenv("AKASHA_SERVE__PORT", "9100")
    settings = config.load(data_dir=tmp_path / "arg")
    assert settings.hot.shards == 4  # from the file
    assert settings.serve.port == 9100  # the environment beats the file
    assert settings.data_dir == (tmp_path / "arg").resolve()  # arguments beat both


def test_null_in_the_environment_unsets_an_optional_setting(monkeypatch):
    assert config.load().tiers.hot_target_p95_ms == 100
    monkeypatch.setenv("AKASHA_TIERS__HOT_TARGET_P95_MS", "null")  # a fixed hot window
    assert config.load().tiers.hot_target_p95_ms is None


def test_admin_key_from_environment_is_secret(monkeypatch):
    monkeypatch.setenv("AKASHA_ADMIN_KEY", "s3cret-admin")
    settings = config.load()
    assert "s3cret-admin" not in repr(settings)
    assert config.to_dict(settings)["admin_key"] == "s3cret-admin"
    assert config.from_dict(config.to_dict(settings)).admin_key.get_secret_value() == "s3cret-admin"


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("hot:\n  shards: 0\n", "shards"),
        ("hot:\n  shardz: 3\n", "shardz"),
        ("tiers:\n  hot_days: 30\n  warm_days: 10\n", "warm_days"),
        ("tiers:\n  hot_min_days: 8\n", "hot_min_days"),
        ("tiers:\n  migrate_every_s: -1\n", "migrate_every_s"),
        ("- just a list\n", "mapping"),
    ],
)
def test_bad_configuration_names_the_setting(tmp_path, monkeypatch, yaml_text, needle):
    path = tmp_path / "akasha.yaml"
    path.write_text(yaml_text)
    monkeypatch.setenv("AKASHA_CONFIG", str(path))
    with pytest.raises(ConfigError, match=needle):
        config.load()


def test_missing_config_file(monkeypatch, tmp_path):
    monkeypatch.setenv("AKASHA_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        config.load()
