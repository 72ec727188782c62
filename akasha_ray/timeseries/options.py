"""Tunables of the time-series stores and their writer, with the plan's refresh offsets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from akasha_ray.timeseries.models import ROLLUP_WIDTHS


class RollupPolicy(BaseModel):
    """When a rollup is refreshed, as in TimescaleDB's `add_continuous_aggregate_policy`.

    A refresh materializes every bucket older than `now - end_offset` (younger ones still change,
    and queries aggregate them from raw points), and folds late points into buckets no older than
    `now - start_offset`. Late points older than that stay correct too: queries read their buckets
    from the raw points until a refresh covers them.
    """

    model_config = ConfigDict(extra="forbid")

    start_offset: timedelta = Field(description="How far back a refresh re-aggregates late points.")
    end_offset: timedelta = Field(description="Buckets younger than this are not materialized.")
    schedule_interval: timedelta = Field(description="How often the policy runs.")


class TimeseriesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rollup_5m: RollupPolicy = RollupPolicy(
        start_offset=timedelta(hours=1),
        end_offset=timedelta(minutes=10),
        schedule_interval=timedelta(minutes=5),
    )
    rollup_1h: RollupPolicy = RollupPolicy(
        start_offset=timedelta(days=1),
        end_offset=timedelta(hours=1),
        schedule_interval=timedelta(hours=1),
    )
    flush_max_points: int = Field(
        10_000, ge=1, le=1_000_000, description="The writer flushes once this many points wait."
    )
    flush_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="The writer flushes points at most this old; a crash loses at most this much.",
    )
    max_pending_points: int = Field(
        1_000_000,
        ge=1,
        description="Writes get 503 while this many points wait (the store is failing or slow).",
    )
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="How long a clean stop retries a failing store before it says what is left.",
    )
    journal_dir: Path | None = Field(
        None,
        description="Where accepted points are journaled (fsynced) before the 202: by default "
        "<data_dir>/metrics-journal on the node the timeseries actor runs on.",
    )
    pool_min_size: int = Field(1, ge=1, description="asyncpg pool size (PostgreSQL backends).")
    pool_max_size: int = Field(
        4, ge=1, description="asyncpg pool size; 1 for a server with one session, like PGlite."
    )
    require_timescaledb: bool = Field(
        False,
        description="Refuse to start on PostgreSQL without the timescaledb extension.",
    )
    retention: timedelta | None = Field(
        None, description="TimescaleDB only: drop raw chunks older than this; rollups stay."
    )
    compress_after: timedelta | None = Field(
        None, description="TimescaleDB only: compress raw chunks older than this."
    )

    @model_validator(mode="after")
    def _windows_make_sense(self) -> TimeseriesOptions:
        for key, policy in self.policies().items():
            width = ROLLUP_WIDTHS[key]
            # TimescaleDB refuses a policy window narrower than two buckets; so do we, everywhere.
            if policy.start_offset - policy.end_offset < 2 * width:
                raise ValueError(
                    f"rollup_{key}: start_offset must exceed end_offset by at least {2 * width}"
                )
            if policy.end_offset < timedelta(0) or policy.schedule_interval <= timedelta(0):
                raise ValueError(f"rollup_{key}: offsets and schedule_interval must be positive")
        if self.retention is not None:
            widest = max(p.start_offset for p in self.policies().values())
            # Dropping raw chunks inside a refresh window would empty rollup buckets on refresh.
            if self.retention <= widest:
                raise ValueError(f"retention must be longer than every start_offset ({widest})")
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self

    def policies(self) -> dict[str, RollupPolicy]:
        return {"5m": self.rollup_5m, "1h": self.rollup_1h}

    @property
    def refresh_every(self) -> timedelta:
        return min(p.schedule_interval for p in self.policies().values())
