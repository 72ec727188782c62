"""The time-series seam's boundary models: points in, buckets out, and what a query may ask.

Every name that reaches a store is checked here against a strict pattern, so the stores can bind
them as SQL parameters without a second thought (they never splice them into SQL either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from akasha_ray.models import Name, UtcDatetime
from akasha_ray.validation import not_future

MAX_POINTS_PER_REQUEST = 10_000
MAX_TAGS = 16
# A query answers at most this many buckets (raw: points); a wider one gets a 422 that says how to
# narrow it, instead of an answer that takes seconds and megabytes.
MAX_BUCKETS = 20_000

# Stores keep microseconds; pandas (the tests' peer) keeps nanoseconds up to 2262.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)

# Dotted lower-case words: "akasha.search.latency_ms", "tokens_per_second".
METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
TAG_KEY_PATTERN = r"^[a-z_][a-z0-9_]{0,63}$"
TAG_VALUE_PATTERN = r"^[^\x00-\x1f\x7f]{0,256}$"  # printable, at most 256 characters

MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN, max_length=128)]
TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, StringConstraints(pattern=TAG_VALUE_PATTERN)]
# strict: a JSON number (int or float), never a bool or a numeric string; NaN and inf refused.
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]

BucketWidth = Literal["raw", "5m", "1h"]
ROLLUP_WIDTHS: dict[str, timedelta] = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"timestamp must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(_Strict):
    """One measurement of one metric of one system."""

    timestamp: UtcDatetime = Field(
        description="RFC 3339 with an offset; stored in UTC; at most now + 1 day."
    )
    system_id: Name = Field(description="The AI system measured.")
    metric_name: MetricName = Field(description="Dotted lower-case name, e.g. latency_ms.")
    value: FiniteFloat
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict, max_length=MAX_TAGS, description="Free labels, stored as given."
    )

    @field_validator("timestamp")
    @classmethod
    def _timestamp_in_range(cls, value: datetime) -> datetime:
        # Each future bucket would stay in memory until its time comes: no point dated ahead.
        return not_future(_in_range(value))


class WritePointsRequest(_Strict):
    """Body of `POST /v1/metrics`."""

    points: list[Point] = Field(min_length=1, max_length=MAX_POINTS_PER_REQUEST)


class MetricsQuery(_Strict):
    """Query of `GET /v1/metrics/query`.

    Bucketed answers (5m, 1h) hold every bucket, aligned on UTC boundaries, that overlaps
    [start, end), each aggregating all of its points. Raw answers hold the points in [start, end),
    one row per distinct timestamp (points at the same instant are aggregated together).
    """

    system_id: Name | None = Field(
        None, description="One system; None aggregates over every system (callers scope it)."
    )
    metric_name: MetricName
    start: UtcDatetime
    end: UtcDatetime
    bucket: BucketWidth = Field("5m", validate_default=True)

    @field_validator("start")
    @classmethod
    def _start_in_range(cls, value: datetime) -> datetime:
        return _in_range(value)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError("end must be after start")
        return min(value, LATEST)

    @field_validator("bucket")
    @classmethod
    def _not_too_many_buckets(cls, value: str, info: ValidationInfo) -> str:
        start, end = info.data.get("start"), info.data.get("end")
        width = ROLLUP_WIDTHS.get(value)
        if width is not None and start is not None and end is not None:
            count = (ceil_time(end, width) - floor_time(start, width)) / width
            if count > MAX_BUCKETS:
                raise ValueError(
                    f"{count:.0f} buckets of {value} asked, at most {MAX_BUCKETS}: "
                    "narrow [start, end) or choose a wider bucket"
                )
        return value

    @property
    def aligned_start(self) -> datetime:
        """Start of the first bucket that overlaps [start, end)."""
        width = ROLLUP_WIDTHS.get(self.bucket)
        return self.start if width is None else floor_time(self.start, width)

    @property
    def aligned_end(self) -> datetime:
        """End of the last bucket that overlaps [start, end)."""
        width = ROLLUP_WIDTHS.get(self.bucket)
        return self.end if width is None else ceil_time(self.end, width)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One aggregated bucket (or, for raw queries, one instant); `bucket` is its UTC start.

    Output only, built by the stores from their own rows: a plain dataclass, because validating
    hundreds of pydantic models would cost more than the query itself. Pydantic still documents and
    serializes it inside `QueryResponse`.
    """

    bucket: datetime
    avg: float
    min: float
    max: float
    count: int


class QueryResponse(_Strict):
    buckets: list[Bucket]


def floor_time(value: datetime, width: timedelta) -> datetime:
    """`value` rounded down to a multiple of `width` since the Unix epoch (UTC boundaries)."""
    return EARLIEST + ((value - EARLIEST) // width) * width


def ceil_time(value: datetime, width: timedelta) -> datetime:
    """`value` rounded up to a multiple of `width` since the Unix epoch."""
    floor = floor_time(value, width)
    return floor if floor == value else floor + width
