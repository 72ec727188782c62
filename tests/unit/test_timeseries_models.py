from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError

from akasha_ray.errors import InvalidInput
from akasha_ray.timeseries import MetricsQuery, Point, PointBatch, QueryResponse
from akasha_ray.timeseries.models import MAX_BUCKETS, WritePointsRequest, ceil_time, floor_time

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def point(**overrides):
    fields = {"timestamp": T, "system_id": "sys-a", "metric_name": "latency_ms", "value": 1.5}
    return Point(**{**fields, **overrides})


def test_point_is_normalised_to_utc():
    p = point(timestamp=datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert p.timestamp == T and p.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"timestamp": datetime(2025, 3, 1)},  # naive: which zone?
        {"timestamp": datetime(1969, 12, 31, tzinfo=UTC)},
        {"metric_name": "Latency"},
        {"metric_name": "latency ms"},
        {"metric_name": "x'; DROP TABLE metrics; --"},
        {"metric_name": "a" * 129},
        {"system_id": "../etc"},
        {"system_id": ""},
        {"value": float("nan")},
        {"value": float("inf")},
        {"value": True},
        {"value": "1.5"},
        {"tags": {"Bad Key": "x"}},
        {"tags": {"ok": "line\nbreak"}},
        {"tags": {f"k{i}": "v" for i in range(17)}},
        {"unexpected": 1},
    ],
)
def test_point_rejects(overrides):
    with pytest.raises(ValidationError):
        point(**overrides)


def test_point_accepts_dotted_names_ints_and_tags():
    p = point(metric_name="akasha.search.latency_ms", value=3, tags={"tier": "hot"})
    assert p.value == 3.0 and p.tags == {"tier": "hot"}


def test_write_request_bounds():
    with pytest.raises(ValidationError):
        WritePointsRequest(points=[])
    body = {
        "points": [
            {"timestamp": "2025-03-01T12:00:00Z", "system_id": "s", "metric_name": "m", "value": 1}
        ]
    }
    assert WritePointsRequest.model_validate(body).points[0].timestamp == T


def test_query_validation():
    with pytest.raises(ValidationError, match="end must be after start"):
        MetricsQuery(metric_name="m", start=T, end=T)
    with pytest.raises(ValidationError):
        MetricsQuery(metric_name="m", start=T, end=T + timedelta(hours=1), bucket="1m")
    with pytest.raises(ValidationError, match="buckets"):
        MetricsQuery(metric_name="m", start=T, end=T + timedelta(minutes=5 * (MAX_BUCKETS + 1)))
    query = MetricsQuery(
        metric_name="m",
        start=T + timedelta(minutes=7),
        end=T + timedelta(hours=1, seconds=1),
        bucket="5m",
    )
    assert query.aligned_start == T + timedelta(minutes=5)
    assert query.aligned_end == T + timedelta(hours=1, minutes=5)
    assert query.system_id is None


def test_buckets_align_on_utc_boundaries():
    five = timedelta(minutes=5)
    assert floor_time(datetime(2025, 3, 1, 12, 9, 59, tzinfo=UTC), five) == datetime(
        2025, 3, 1, 12, 5, tzinfo=UTC
    )
    assert ceil_time(datetime(2025, 3, 1, 12, 5, tzinfo=UTC), five) == datetime(
        2025, 3, 1, 12, 5, tzinfo=UTC
    )
    local = datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert floor_time(local, timedelta(hours=1)) == datetime(2025, 3, 1, 7, 0, tzinfo=UTC)


def test_query_response_serialises_buckets():
    from akasha_ray.timeseries import Bucket

    body = QueryResponse(buckets=[Bucket(T, 2.0, 1.0, 3.0, 2)]).model_dump(mode="json")
    assert body == {
        "buckets": [
            {"bucket": "2025-03-01T12:00:00Z", "avg": 2.0, "min": 1.0, "max": 3.0, "count": 2}
        ]
    }


def test_batch_from_points_round_trips():
    points = [point(), point(value=2.0, tags={"b": "2", "a": "1"})]
    batch = PointBatch.from_points(points)
    assert len(batch) == 2
    assert batch.table.column("tags").to_pylist() == [None, '{"a":"1","b":"2"}']
    assert batch.points() == points


def test_batch_from_columns_validates_like_the_model():
    ts = np.array([int(T.timestamp() * 1e6)] * 2)
    ok = PointBatch.from_columns(ts, ["a", "b"], ["m", "m"], np.array([1.0, 2.0]))
    assert len(ok) == 2
    with pytest.raises(InvalidInput, match="metric_name"):
        PointBatch.from_columns(ts, ["a", "b"], ["m", "Bad"], np.array([1.0, 2.0]))
    with pytest.raises(InvalidInput, match="system_id"):
        PointBatch.from_columns(ts, ["a", "b\n"], ["m", "m"], np.array([1.0, 2.0]))
    with pytest.raises(InvalidInput, match="finite"):
        PointBatch.from_columns(ts, ["a", "b"], ["m", "m"], np.array([1.0, np.nan]))
    with pytest.raises(InvalidInput, match="timestamp"):
        PointBatch.from_columns(np.array([-1, 0]), ["a", "b"], ["m", "m"], np.array([1.0, 2.0]))
    with pytest.raises(InvalidInput, match="tag"):
        PointBatch.from_columns(
            ts, ["a", "b"], ["m", "m"], np.array([1.0, 2.0]), [{"A": "x"}, None]
        )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timestamp": datetime.now(UTC) + timedelta(days=2)}, "timestamp"),
        ({"timestamp": "2200-01-01T00:00:00Z"}, "timestamp"),
        ({"timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp"),  # beyond 9999 in UTC
        ({"value": float("-inf")}, "value"),
        ({"tags": {"k": "\ud800"}}, "tags.k"),
    ],
)
def test_hostile_point_names_the_field(overrides, field):
    with pytest.raises(ValidationError) as caught:
        point(**overrides)
    assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [field]


def test_point_may_be_dated_a_little_ahead():
    soon = datetime.now(UTC) + timedelta(hours=23)
    assert point(timestamp=soon).timestamp == soon


@pytest.mark.parametrize("field", ["start", "end"])
def test_query_bounds_that_overflow_name_the_field(field):
    bounds = {"start": T, "end": T + timedelta(hours=1)}
    bounds[field] = "0001-01-01T00:00:00+01:00" if field == "start" else "9999-12-31T23:59:59-01:00"
    with pytest.raises(ValidationError) as caught:
        MetricsQuery(metric_name="m", **bounds)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_query_bounds_may_be_far_ahead():
    query = MetricsQuery(metric_name="m", start=T, end="9999-12-31T00:00:00Z", bucket="raw")
    assert query.end.year == 2262  # clamped to what the stores keep
