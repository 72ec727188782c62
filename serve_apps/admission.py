"""Bounded work at the ingress: how many requests a replica serves at once, how many wait, and for
how long one may run. Any request beyond those bounds gets a 503 JSON answer with Retry-After,
never an unbounded queue or a hung connection.

Ingests (POST /v1/memories) have a lane of their own, with its own bounds, beside every other
request. An ingest holds its place while the embedder's one bulk thread works through the ingests
ahead of it (seconds), where a search needs its place for tens of milliseconds: in one shared
queue, a backlog of ingests filled every place at 256 clients, and searches that the machine had
the CPU for were refused (bench clients: answered searches fell by a quarter from 8 clients to
256 while ingests finished at the same rate). Separate lanes shed the bulk work first, as a
search engine's separate search and write pools do.

Serve's own limits (set in serve_apps/app.py) sit well outside these, so that the overflow reaches
this middleware, which refuses it at once in Akasha's error format. Refusing is left to Serve's
proxy only as a backstop: a full replica makes the proxy's router queue requests and poll the
replica, CPU that at 256 clients the requests themselves went short of. Serve's
`request_timeout_s` is a backstop behind the deadline here.

Retry-After says when a lane will have room: the time the requests already waiting in it, and the
clients it refused in the last RATE_WINDOW_S, take to drain at the rate its requests have been
finishing (at least `retry_after_s`, at most RETRY_AFTER_MAX_S). Counting the refused spreads
their returns: told the waiting queue's drain time alone, they all came back together and most
were refused again, a refusal for every answer at 256 clients (each costs the proxy and the
replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akasha_ray import observability
from akasha_ray.errors import Unavailable

# Routes with a deadline of their own: a migration pass may take minutes (the migrator goes on
# after the caller gives up); /healthz must answer under load, so it is not queued.
OWN_DEADLINE_S = {"/v1/tiers/migrate": 600.0}
UNQUEUED = {"/healthz"}
INGEST = ("POST", "/v1/memories")  # the ingest lane's one route
RETRY_AFTER_MAX_S = 60.0
RATE_WINDOW_S = 10.0  # finishing rate: requests finished within the last this many seconds


@dataclass
class Limits:
    ongoing: int = 32
    queued: int = 64
    deadline_s: float = 180.0
    retry_after_s: float = 1.0
    ingests_ongoing: int = 4
    ingests_queued: int = 16

    def bounds(self, lane: str) -> tuple[int, int]:
        """(at once, waiting) of a lane."""
        if lane == "ingests":
            return self.ingests_ongoing, self.ingests_queued
        return self.ongoing, self.queued


class Lane:
    """One bounded queue: the requests running and waiting in it (also in the metrics, as
    `akasha_admission_requests`), and when its requests finished and were refused in the last
    RATE_WINDOW_S (what Retry-After is worked out from)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = 0
        self.waiting = 0
        self._turn = asyncio.Condition()
        self._finished: deque[float] = deque()
        self._refused: deque[float] = deque()

    def full(self, limits: Limits) -> bool:
        ongoing, queued = limits.bounds(self.name)
        return self.running >= ongoing and self.waiting >= queued

    @contextlib.asynccontextmanager
    async def place(self, limits: Limits) -> AsyncIterator[None]:
        """Wait for a place to run in, hold it while the body runs."""
        ongoing, _ = limits.bounds(self.name)
        async with self._turn:
            self.waiting += 1
            self._show()
            try:
                await self._turn.wait_for(lambda: self.running < ongoing)
                self.running += 1
            finally:  # admitted or cancelled while waiting: the metrics follow either way
                self.waiting -= 1
                self._show()
        try:
            yield
        finally:
            self._finished.append(time.monotonic())
            self._forget_old()
            async with self._turn:
                self.running -= 1
                self._show()
                self._turn.notify_all()

    def refused(self, reason: str) -> None:
        """A 503 (`reason`: full or deadline); a full lane's refusals count in Retry-After."""
        observability.count_refused(self.name, reason)
        if reason == "full":
            self._refused.append(time.monotonic())

    def _show(self) -> None:
        observability.set_lane(self.name, self.running, self.waiting)

    def _forget_old(self) -> None:
        too_old = time.monotonic() - RATE_WINDOW_S
        for times in (self._finished, self._refused):
            while times and times[0] < too_old:
                times.popleft()

    def retry_after_s(self, least_s: float) -> float:
        """How long the waiting and the recently refused take to drain at the recent finishing
        rate (`least_s` with nothing to go by yet)."""
        self._forget_old()
        if not self._finished:
            return least_s
        ahead = self.waiting + len(self._refused)
        drain = ahead * RATE_WINDOW_S / len(self._finished)
        return min(max(drain, least_s), RETRY_AFTER_MAX_S)


class Admission:
    """ASGI middleware; `configure` sets the limits once the replica has read its settings."""

    limits = Limits()

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Named for what they hold: the name is also the refusal's word for it.
        self.lanes = {name: Lane(name) for name in ("ingests", "requests")}

    @classmethod
    def configure(cls, limits: Limits) -> None:
        cls.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNQUEUED:
            await self.app(scope, receive, send)
            return
        limits = self.limits
        lane = self.lanes["ingests" if (scope.get("method"), path) == INGEST else "requests"]
        if lane.full(limits):
            why = f"busy: {lane.waiting} {lane.name} already wait (retry)"
            retry_after_s = lane.retry_after_s(limits.retry_after_s)
            lane.refused("full")
            await _refuse(send, why, retry_after_s)
            return
        async with lane.place(limits):
            deadline_s = OWN_DEADLINE_S.get(path, limits.deadline_s)
            await self._run(scope, receive, send, lane, deadline_s)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, lane: Lane, deadline_s: float
    ) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, sending), deadline_s)
        except TimeoutError:
            if not started:  # once an answer has begun, cutting it short is all that is left
                lane.refused("deadline")
                why = f"no answer within {deadline_s:g} s (retry)"
                await _refuse(send, why, self.limits.retry_after_s)


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


async def _refuse(send: Send, why: str, retry_after_s: float) -> None:
    body = json.dumps(Unavailable(why).to_dict()).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after_header(retry_after_s).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
