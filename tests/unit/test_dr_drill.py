"""The drill's own logic, without Ray: its verdict (zombies, RPO, RTO) from a writer's record,
and the writer following the primary over real HTTP (a region that refuses connections, one that
answers 503 `not_primary` naming another, one that takes writes)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from akasha_ray.ports import free_port
from akasha_ray.replication.drill import Ack, Target, Writer, judge

KILL, PROMOTE = 100.0, 101.0


def ack(region: str, sent: float, acked: float, seq: int = 1, kind: str = "memory") -> Ack:
    return Ack(kind, seq, region, sent, acked)


def test_nothing_lost_no_zombie_rto_from_the_new_primarys_first_answer():
    acks = [
        ack("east", 90, 91),
        ack("east", 99, 99.5),
        ack("west", 102, 103.5),
        ack("west", 104, 105),
    ]
    zombies, rpo, rto = judge(acks, [], "east", "west", KILL, PROMOTE)
    assert zombies == [] and rpo == 0.0 and rto == pytest.approx(3.5)


def test_rpo_is_the_age_at_the_kill_of_the_oldest_lost_write():
    lost = [ack("east", 95, 96, seq=2), ack("east", 97, 98.5, seq=3)]
    _, rpo, _ = judge(lost, lost, "east", "west", KILL, PROMOTE)
    assert rpo == pytest.approx(4.0)
    # Answered just after the kill (in flight when it came): age 0, not negative.
    _, rpo, _ = judge([], [ack("east", 99.9, 100.2)], "east", "west", KILL, PROMOTE)
    assert rpo == 0.0


def test_writes_acknowledged_by_a_region_not_primary_then_are_zombies():
    secondary_before = ack("west", 50, 51, seq=1)
    old_after = ack("east", 101.5, 102, seq=2)
    fine = [ack("east", 99, 100.1, seq=3), ack("west", 101.2, 102, seq=4)]
    zombies, _, rto = judge([secondary_before, old_after, *fine], [], "east", "west", KILL, PROMOTE)
    assert zombies == [secondary_before, old_after]
    assert rto == pytest.approx(2.0)


def test_no_rto_when_the_new_primary_never_answered():
    assert judge([ack("east", 90, 91)], [], "east", "west", KILL, PROMOTE)[2] is None


class _Region(BaseHTTPRequestHandler):
    answer: tuple[int, dict] = (201, {"ids": []})
    posts: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.posts.append(self.path)
        status, body = self.answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def region(status: int, body: dict) -> Iterator[tuple[str, list[str]]]:
    posts: list[str] = []
    handler = type("Handler", (_Region,), {"answer": (status, body), "posts": posts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts
    finally:
        server.shutdown()
        server.server_close()


def test_the_writer_follows_not_primary_and_skips_a_dead_region():
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    refusal = {"error": "not_primary", "message": "m", "primary": "north", "primary_url": None}
    with (
        region(503, refusal) as (west_url, west_posts),
        region(201, {"ids": [], "accepted": 1, "upserted": 1}) as (north_url, north_posts),
    ):
        writer = Writer(
            [
                Target("east", dead, "k"),
                Target("west", west_url, "k"),
                Target("north", north_url, "k"),
            ],
            tick_s=0.05,
            timeout_s=5,
        )
        writer.start()
        deadline = time.monotonic() + 30
        while len({a.kind for a in writer.snapshot()}) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        writer.stop()
    acks = writer.snapshot()
    assert {a.region for a in acks} == {"north"}
    assert {a.kind for a in acks} == {"memory", "metric", "edge"}
    assert west_posts, "the writer asked the next region after the dead one"
    assert writer.failures.get("ConnectError") and writer.failures.get("503")
    # An edge is two requests (its entity, then the relationship): both reached north.
    assert {"/v1/memories", "/v1/metrics", "/v1/graph/entities", "/v1/graph/relationships"} <= set(
        north_posts
    )
