"""The local change log: per-stream LSNs without gaps, reads beyond a position, marks, restarts."""

from __future__ import annotations

import pyarrow as pa
import pytest

from akasha_ray.replication import changes
from akasha_ray.replication.changelog import ChangeLog


def _entry(stream: str, n: int) -> tuple[str, str, str | None, bytes]:
    return (stream, "delete", "sys-a", changes.json_payload({"key": f"sys-a/{n}", "at": n}))


def test_lsns_run_per_stream_without_gaps_and_survive_a_reopen(tmp_path):
    log = ChangeLog(tmp_path / "log.duckdb")
    assert log.append([_entry("hot-0", 1), _entry("hot-0", 2), _entry("graph", 3)], 1) == {
        "hot-0": 2,
        "graph": 1,
    }
    assert log.append([_entry("hot-0", 4)], 1) == {"hot-0": 3}
    log.close()
    log = ChangeLog(tmp_path / "log.duckdb")
    assert log.last() == {"hot-0": 3, "graph": 1}
    assert log.append([_entry("graph", 5)], 2) == {"graph": 2}
    rows = log.read({}, 100)
    assert rows.schema == changes.SCHEMA
    assert [
        (s, n, e)
        for s, n, e in zip(
            *(rows.column(c).to_pylist() for c in ("stream", "lsn", "epoch")), strict=True
        )
    ] == [
        ("graph", 1, 1),
        ("graph", 2, 2),
        ("hot-0", 1, 1),
        ("hot-0", 2, 1),
        ("hot-0", 3, 1),
    ]


def test_read_and_pending_start_beyond_the_position_given(tmp_path):
    log = ChangeLog(tmp_path / "log.duckdb")
    log.append([_entry("hot-0", i) for i in range(5)] + [_entry("keys", 9)], 1)
    after = {"hot-0": 3}
    rows = log.read(after, 100)
    assert list(zip(rows["stream"].to_pylist(), rows["lsn"].to_pylist(), strict=True)) == [
        ("hot-0", 4),
        ("hot-0", 5),
        ("keys", 1),
    ]
    assert log.read(after, 1).num_rows == 1
    count, oldest = log.pending(after)
    assert count == 3 and oldest is not None
    assert log.pending(log.last()) == (0, None)
    decoded = changes.decode("delete", rows["payload"][0].as_py())
    assert decoded == {"key": "sys-a/3", "at": 3}


def test_compaction_never_reuses_a_number(tmp_path):
    log = ChangeLog(tmp_path / "log.duckdb")
    log.append([_entry("hot-0", i) for i in range(3)], 1)
    assert log.compact({"hot-0": 3}) == 3
    assert log.read({}, 10).num_rows == 0
    log.close()
    log = ChangeLog(tmp_path / "log.duckdb")
    assert log.append([_entry("hot-0", 7)], 1) == {"hot-0": 4}


def test_marks_never_move_back_and_state_is_kept(tmp_path):
    log = ChangeLog(tmp_path / "log.duckdb")
    log.mark("shipped", "eu", {"hot-0": 5, "graph": 2})
    log.mark("shipped", "eu", {"hot-0": 3})
    log.mark("applied", "us", {"keys": 1})
    assert log.marks("shipped") == {"eu": {"hot-0": 5, "graph": 2}}
    assert log.marks("applied") == {"us": {"keys": 1}}
    assert log.region_state() is None
    log.set_region_state(2, "eu")
    log.close()
    assert ChangeLog(tmp_path / "log.duckdb").region_state() == (2, "eu")


def test_a_memories_payload_round_trips_with_its_links():
    from datetime import UTC, datetime

    import numpy as np

    from akasha_ray.models import MemoryIn
    from akasha_ray.records import build_batch

    memories = [
        MemoryIn(system_id="sys-a", conversation_id="c", content=f"note {i}") for i in range(3)
    ]
    batch = build_batch(
        memories,
        np.ones((3, 384), np.float32),
        model="m",
        model_revision="r",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    key = f"sys-a/{batch['id'][1].as_py()}"
    table = changes.decode("memories", changes.memories_payload(batch, {key: ["alice"]}))
    assert table.schema == changes.MEMORIES_SCHEMA
    assert table["entities"].to_pylist() == [[], ["alice"], []]
    assert table.drop_columns(["entities"]).equals(batch)


def test_an_unknown_kind_is_refused(tmp_path):
    log = ChangeLog(tmp_path / "log.duckdb")
    with pytest.raises(ValueError, match="kind"):
        log.append([("hot-0", "upsert", None, b"")], 1)
    assert log.last() == {}
    assert isinstance(log.read({}, 1), pa.Table)
