"""The hostile-input checks on their own: each refuses what it should and keeps what it should."""

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from akasha_ray.embedding import normalize
from akasha_ray.validation import (
    FLOAT32_MAX,
    MAX_JSON_DEPTH,
    check_json,
    check_text,
    find_problem,
    not_future,
    unit_vector,
    utc,
)


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "loc", "kind"),
    [
        ({"a": ["x", "\ud800"]}, ("a", 1), "string"),
        ({"ok": 1, "b": {"\udc00": 1}}, ("b", "\\udc00"), "string"),
        ([1.0, float("nan")], (1,), "finite_number"),
        ({"x": {"y": float("inf")}}, ("x", "y"), "finite_number"),
        ({"x": -math.inf}, ("x",), "finite_number"),
        ("\udfff", (), "string"),
    ],
)
def test_find_problem_names_the_spot(value, loc, kind):
    problem = find_problem(value)
    assert problem is not None
    assert (problem.loc, problem.type) == (loc, kind)


def test_depth_limit_is_32_levels():
    assert find_problem(_nested(MAX_JSON_DEPTH)) is None
    problem = find_problem(_nested(MAX_JSON_DEPTH + 1))
    assert problem.type == "too_deep"
    assert problem.loc == ("a",) * MAX_JSON_DEPTH
    # Deeper than Python's recursion limit: still walked, still refused.
    assert find_problem(_nested(100_000)).type == "too_deep"
    assert find_problem([[[]]], max_depth=2).type == "too_deep"


def test_clean_json_passes_untouched():
    value = {"lang": "en", "emoji": "\U0001f600 é", "n": [1, 2.5, None, True], "deep": _nested(5)}
    assert find_problem(value) is None
    assert check_json(value) is value


def test_check_json_message_says_where():
    with pytest.raises(ValueError, match=r"\['a'\]\[1\]: must be a finite number"):
        check_json({"a": [0, float("nan")]})


def test_check_text():
    assert check_text("naïve \U0001f600") == "naïve \U0001f600"
    with pytest.raises(ValueError, match="lone surrogate"):
        check_text("ab\ud800cd")


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),
    ],
)
def test_utc_refuses_overflowing_offsets(value):
    with pytest.raises(ValueError, match="out of range"):
        utc(value)


def test_utc_converts():
    moment = utc(datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert moment == datetime(2026, 3, 1, 10, tzinfo=UTC) and moment.tzinfo is UTC
    assert utc(datetime(1, 1, 1, tzinfo=UTC)).year == 1


def test_not_future():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not_future(now + timedelta(hours=23), now)
    with pytest.raises(ValueError, match="now \\+ 1 day"):
        not_future(now + timedelta(days=1, seconds=1), now)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1e308] + [0.1] * 383, "float32"),
        ([-3.5e38] + [0.0] * 383, "float32"),
        ([1e-50] * 384, "all zeros"),
        ([0.0] * 384, "all zeros"),
        ([math.nan] + [0.1] * 383, "finite"),
        ([math.inf] + [0.1] * 383, "finite"),
        ([0.1] * 10, "384"),
    ],
)
def test_unit_vector_refuses(values, message):
    with pytest.raises(ValueError, match=message):
        unit_vector(values, 384)


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, FLOAT32_MAX])
def test_unit_vector_survives_extreme_but_valid_values(scale):
    values = [scale, -scale] + [0.0] * 382
    vector = unit_vector(values, 384)
    # What the server does next: float32 and normalized again; it stays a finite unit vector.
    served = normalize(np.asarray(vector, dtype=np.float32))
    assert np.isfinite(served).all()
    assert float(np.linalg.norm(served)) == pytest.approx(1.0, abs=1e-6)
    assert served[0] == pytest.approx(1 / math.sqrt(2), abs=1e-6)


def test_body_problem_reads_what_python_json_reads():
    from serve_apps.body_guard import body_problem

    assert body_problem(b"") is None
    assert body_problem(b"{not json") is None  # FastAPI's own 422 says where
    assert body_problem(b'{"a": [1, NaN]}').loc == ("a", 1)
    assert body_problem(b'{"a": 1e999}').type == "finite_number"
    assert body_problem(b'{"k": "\\ud800"}').loc == ("k",)
    assert body_problem(b"[" * 100_000 + b"]" * 100_000).type == "too_deep"
    assert body_problem(b'{"a": "\xff"}').type == "json_invalid"
    assert body_problem(b'{"a": {"b": ["\xc3\xa7", 1.5]}}') is None
