"""Checks for hostile input, shared by every boundary model and by the HTTP body guard.

Each refuses with a ValueError whose message says what to change, so pydantic turns it into a 422
naming the field. What they stop, and why it mattered:
- a lone surrogate (`"\\ud800"`) is a valid Python str but no UTF-8 encoder takes it, so it was
  stored and then every answer that carried it failed;
- NaN and infinities (Python's json reads `NaN`, `Infinity` and `1e999`) cannot be written back
  as JSON;
- deep nesting makes every later encode and decode recurse;
- an offset that moves a time below year 1 or above 9999 raised OverflowError, not ValueError;
- a float that overflows float32 turns the normalized vector into NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import AfterValidator

MAX_JSON_DEPTH = 32
# Clocks drift; a client a little ahead is fine, one dating data years ahead is not.
MAX_FUTURE = timedelta(days=1)
FLOAT32_MAX = float(np.finfo(np.float32).max)


class Problem(NamedTuple):
    """Where a JSON value goes wrong: `loc` in FastAPI's shape, a message and an error type."""

    loc: tuple[str | int, ...]
    msg: str
    type: str


def has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Problem | None:
    """The first hostile spot in a decoded JSON value (depth-first), or None.

    Depth counts containers: `{}` is 1, `{"a": []}` is 2. Iterative, so a value nested past
    Python's recursion limit is still walked.
    """
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (), 0)]
    while stack:
        item, loc, depth = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return Problem(loc, "must not hold a lone surrogate (not valid Unicode)", "string")
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Problem(loc, "must be a finite number (no NaN or infinity)", "finite_number")
        elif isinstance(item, dict | list | tuple):
            if depth + 1 > max_depth:
                return Problem(loc, f"JSON nested deeper than {max_depth} levels", "too_deep")
            if isinstance(item, dict):
                children = list(item.items())
                for key, _ in children:
                    if isinstance(key, str) and has_lone_surrogate(key):
                        return Problem(
                            (*loc, key.encode("utf-8", "backslashreplace").decode()),
                            "key must not hold a lone surrogate (not valid Unicode)",
                            "string",
                        )
            else:
                children = list(enumerate(item))
            stack.extend((child, (*loc, key), depth + 1) for key, child in reversed(children))
    return None


def _where(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part!r}]" for part in loc)


def check_json(value: Any) -> Any:
    """A JSON value (metadata, properties) free of surrogates, NaN, infinities and deep nesting."""
    problem = find_problem(value)
    if problem is not None:
        where = _where(problem.loc)
        raise ValueError(f"{where + ': ' if where else ''}{problem.msg}")
    return value


def check_text(value: str) -> str:
    if has_lone_surrogate(value):
        raise ValueError("must not hold a lone surrogate (not valid Unicode)")
    return value


def utc(value: datetime) -> datetime:
    """An aware time in UTC; one whose offset pushes it out of years 1 to 9999 is refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range once converted to UTC (years 1 to 9999)") from None


def not_future(value: datetime, now: datetime | None = None) -> datetime:
    """Refuse times more than MAX_FUTURE ahead of now (stored data is never dated ahead)."""
    limit = (now or datetime.now(UTC)) + MAX_FUTURE
    if value > limit:
        raise ValueError(
            f"must not be later than now + {MAX_FUTURE.days} day ({limit:%Y-%m-%dT%H:%MZ})"
        )
    return value


def unit_vector(values: Sequence[float], dim: int) -> list[float]:
    """A query vector checked and scaled to unit length (in float64, so tiny or huge values
    survive); refused when float32, the stores' type, cannot hold it."""
    if len(values) != dim:
        raise ValueError(f"vector must have {dim} values, got {len(values)}")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("vector values must be finite numbers")
    if (np.abs(array) > FLOAT32_MAX).any():
        raise ValueError(
            f"vector values must lie within float32's range (|x| <= {FLOAT32_MAX:.4g})"
        )
    if not array.astype(np.float32).any():
        raise ValueError("vector must not be all zeros (as float32)")
    scaled = array / np.abs(array).max()  # in [-1, 1]: the norm cannot overflow or underflow
    return (scaled / np.linalg.norm(scaled)).tolist()


Text = Annotated[str, AfterValidator(check_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
