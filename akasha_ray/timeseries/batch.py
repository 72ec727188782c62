"""`PointBatch`: validated points as one Arrow table, the form they travel in between processes.

Ray ships an Arrow table far faster than thousands of pydantic objects, and every store loads one
in a single statement. A batch is only built from validated data: from `Point` models, or from
columns checked here with the same rules, vectorised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.errors import InvalidInput
from akasha_ray.models import Name
from akasha_ray.timeseries.models import (
    EARLIEST,
    LATEST,
    MAX_TAGS,
    METRIC_NAME_PATTERN,
    TAG_KEY_PATTERN,
    TAG_VALUE_PATTERN,
    Point,
)

SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("system_id", pa.string(), nullable=False),
        pa.field("metric_name", pa.string(), nullable=False),
        pa.field("metric_value", pa.float64(), nullable=False),
        pa.field("tags", pa.string()),  # canonical JSON object; null when there are none
    ]
)

_SYSTEM_ID = re.compile(Name.__metadata__[0].pattern)
_METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
_TAG_KEY = re.compile(TAG_KEY_PATTERN)
_TAG_VALUE = re.compile(TAG_VALUE_PATTERN)


def tags_json(tags: Mapping[str, str]) -> str | None:
    # Sorted keys: equal tag sets store as equal strings.
    return json.dumps(tags, sort_keys=True, separators=(",", ":")) if tags else None


@dataclass(frozen=True)
class PointBatch:
    table: pa.Table

    def __len__(self) -> int:
        return self.table.num_rows

    @classmethod
    def empty(cls) -> PointBatch:
        return cls(SCHEMA.empty_table())

    @classmethod
    def from_points(cls, points: Iterable[Point]) -> PointBatch:
        points = list(points)
        return cls(
            pa.table(
                [
                    pa.array([p.timestamp for p in points], SCHEMA.field("timestamp").type),
                    pa.array([p.system_id for p in points], pa.string()),
                    pa.array([p.metric_name for p in points], pa.string()),
                    pa.array([p.value for p in points], pa.float64()),
                    pa.array([tags_json(p.tags) for p in points], pa.string()),
                ],
                schema=SCHEMA,
            )
        )

    @classmethod
    def from_columns(
        cls,
        timestamps_us: np.ndarray,
        system_ids: Sequence[str] | pa.Array,
        metric_names: Sequence[str] | pa.Array,
        values: np.ndarray,
        tags: Sequence[Mapping[str, str] | None] | None = None,
    ) -> PointBatch:
        """Build a batch from columns (UTC microseconds since the epoch), validating them."""
        n = len(timestamps_us)
        timestamps = pa.array(np.asarray(timestamps_us, dtype=np.int64)).cast(
            SCHEMA.field("timestamp").type
        )
        systems = pa.array(system_ids, pa.string())
        metrics = pa.array(metric_names, pa.string())
        floats = np.asarray(values, dtype=np.float64)
        if not len(systems) == len(metrics) == len(floats) == n:
            raise InvalidInput("columns must all have the same length")
        _check_names(systems, _SYSTEM_ID, "system_id")
        _check_names(metrics, _METRIC_NAME, "metric_name", max_length=128)
        if n and not np.isfinite(floats).all():
            raise InvalidInput("value must be a finite number", field="value")
        if n and (pc.min(timestamps).as_py() < EARLIEST or pc.max(timestamps).as_py() >= LATEST):
            raise InvalidInput(
                f"timestamp must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
                field="timestamp",
            )
        if tags is None:
            tag_column = pa.nulls(n, pa.string())
        else:
            if len(tags) != n:
                raise InvalidInput("columns must all have the same length")
            tag_column = pa.array([tags_json(_checked_tags(t or {})) for t in tags], pa.string())
        table = pa.table(
            [timestamps, systems, metrics, pa.array(floats), tag_column], schema=SCHEMA
        )
        return cls(table)

    @classmethod
    def concat(cls, batches: Sequence[PointBatch]) -> PointBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(pa.concat_tables([b.table for b in batches]).combine_chunks())

    def points(self) -> list[Point]:
        """Back to models (tests, small batches)."""
        rows = self.table.to_pylist()
        return [
            Point.model_construct(
                timestamp=r["timestamp"],
                system_id=r["system_id"],
                metric_name=r["metric_name"],
                value=r["metric_value"],
                tags=json.loads(r["tags"]) if r["tags"] else {},
            )
            for r in rows
        ]


def as_batch(points: PointBatch | Iterable[Point]) -> PointBatch:
    return points if isinstance(points, PointBatch) else PointBatch.from_points(points)


def _check_names(
    column: pa.Array, pattern: re.Pattern[str], field: str, max_length: int | None = None
) -> None:
    if column.null_count:
        raise InvalidInput(f"{field} must not be null", field=field)
    # Fleets have few distinct names: check each once, not once per point.
    for name in pc.unique(column).to_pylist():
        if not pattern.fullmatch(name) or (max_length is not None and len(name) > max_length):
            raise InvalidInput(f"{field} {name!r} does not match {pattern.pattern}", field=field)


def _checked_tags(tags: Mapping[str, str]) -> Mapping[str, str]:
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags per point", field="tags")
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise InvalidInput(f"tag key {key!r} does not match {TAG_KEY_PATTERN}", field="tags")
        if not isinstance(value, str) or not _TAG_VALUE.fullmatch(value):
            raise InvalidInput(f"tag {key!r} must be printable, 256 chars at most", field="tags")
    return tags
