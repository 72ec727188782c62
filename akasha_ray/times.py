"""Instants as integer epoch microseconds, the form every store filters and sorts on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Exact epoch microseconds (float seconds would round some instants by 1 us)."""
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return (moment - EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))
