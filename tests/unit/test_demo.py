"""Tests for the demo data generator."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest

from akasha_ray.demo import SYSTEMS, TOPICS, generate, main, write_jsonl

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return generate(5000, now=NOW)


def by_conversation(records: list[dict]) -> dict[str, list[dict]]:
    conversations: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        conversations[record["conversation_id"]].append(record)
    return conversations


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1001])
def test_exact_count(n: int) -> None:
    assert len(generate(n, now=NOW)) == n


def test_record_shape(records: list[dict]) -> None:
    for record in records:
        assert set(record) == {"system_id", "conversation_id", "content", "created_at", "metadata"}
        assert set(record["metadata"]) == {"role", "topic", "turn"}
        assert record["metadata"]["topic"] in TOPICS
        assert record["conversation_id"].startswith(record["system_id"] + "-c")
        assert record["content"][0].isupper() and record["content"].endswith((".", "?"))
        assert "{" not in record["content"]
    json.dumps(records)


def test_deterministic() -> None:
    assert generate(2000, seed=7, now=NOW) == generate(2000, seed=7, now=NOW)


def test_seeds_differ() -> None:
    first, second = generate(500, seed=1, now=NOW), generate(500, seed=2, now=NOW)
    assert [r["content"] for r in first] != [r["content"] for r in second]


def test_timestamps_in_range_utc_and_sorted(records: list[dict]) -> None:
    times = [datetime.fromisoformat(r["created_at"]) for r in records]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert all(NOW - timedelta(days=120) <= t <= NOW for t in times)
    assert times == sorted(times)
    assert all(r["created_at"].endswith("+00:00") for r in records)


def test_days_and_offset_now() -> None:
    now = datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    times = [datetime.fromisoformat(r["created_at"]) for r in generate(3000, days=2, now=now)]
    assert min(times) >= now - timedelta(days=2)
    assert max(times) <= now
    assert max(times) - min(times) > timedelta(days=1)


def test_tiny_window_keeps_range() -> None:
    times = [datetime.fromisoformat(r["created_at"]) for r in generate(50, days=1e-6, now=NOW)]
    assert all(NOW - timedelta(days=1e-6) <= t <= NOW for t in times)


def test_every_system_and_topic_appears(records: list[dict]) -> None:
    assert {r["system_id"] for r in records} == set(SYSTEMS)
    assert {r["metadata"]["topic"] for r in records} == set(TOPICS)
    assert len(SYSTEMS) == 8 and 8 <= len(TOPICS) <= 15


def test_extra_systems_named_and_present() -> None:
    names = {r["system_id"] for r in generate(3000, systems=12, now=NOW)}
    assert names == set(SYSTEMS) | {"agent-09", "agent-10", "agent-11", "agent-12"}
    assert {r["system_id"] for r in generate(100, systems=3, now=NOW)} == set(list(SYSTEMS)[:3])


def test_conversations_alternate_roles(records: list[dict]) -> None:
    for conversation in by_conversation(records).values():
        turns = sorted(conversation, key=lambda r: r["metadata"]["turn"])
        assert [r["metadata"]["turn"] for r in turns] == list(range(1, len(turns) + 1))
        assert len(turns) <= 8
        roles = [r["metadata"]["role"] for r in turns]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)
        assert len({r["metadata"]["topic"] for r in turns}) == 1
        assert len({r["system_id"] for r in turns}) == 1
        times = [datetime.fromisoformat(r["created_at"]) for r in turns]
        gaps = [b - a for a, b in pairwise(times)]
        assert all(timedelta(seconds=1) < gap <= timedelta(minutes=10) for gap in gaps)


def test_topics_are_lexically_clustered(records: list[dict]) -> None:
    refund_texts = [r["content"] for r in records if r["metadata"]["topic"] == "refunds"]
    assert refund_texts
    share = sum("refund" in t or "return" in t or "money back" in t for t in refund_texts)
    assert share / len(refund_texts) > 0.8
    sleep_texts = [r["content"].lower() for r in records if r["metadata"]["topic"] != "sleep"]
    assert sum("sleep" in t for t in sleep_texts) / len(sleep_texts) < 0.02


def test_texts_vary(records: list[dict]) -> None:
    assert len({r["content"] for r in records}) > 0.5 * len(records)


def test_write_jsonl_round_trip(tmp_path, records: list[dict]) -> None:
    path = tmp_path / "demo.jsonl"
    assert write_jsonl(path, iter(records[:300])) == 300
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records[:300]
    assert write_jsonl(str(path), []) == 0
    assert path.read_text(encoding="utf-8") == ""


def test_main_writes_file(tmp_path, capsys) -> None:
    path = tmp_path / "out.jsonl"
    assert main(["--n", "25", "--out", str(path), "--seed", "3"]) == 0
    assert len(path.read_text(encoding="utf-8").splitlines()) == 25
    assert "25" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": -1}, "n"),
        ({"n": 10, "systems": 0}, "systems"),
        ({"n": 10, "days": 0}, "days"),
        ({"n": 10, "days": -3}, "days"),
        ({"n": 10, "days": float("nan")}, "days"),
        ({"n": 10, "now": datetime(2026, 1, 1)}, "now"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} "):
        generate(**kwargs)
