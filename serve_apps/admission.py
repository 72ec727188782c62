"""Bounded work at the ingress: how many requests a replica serves at once, how many wait, and for
how long one may run. Any request beyond those bounds gets a 503 JSON answer with Retry-After,
never an unbounded queue or a hung connection.

Serve's own limits (set in serve_apps/app.py) sit well outside these, so that the overflow reaches
this middleware, which refuses it at once in Akasha's error format. Refusing is left to Serve's
proxy only as a backstop: a full replica makes the proxy's router queue requests and poll the
replica, CPU that at 256 clients the requests themselves went short of. Serve's
`request_timeout_s` is a backstop behind the deadline here.

Retry-After says when there will be room: the time the requests already waiting, and the
clients refused in the last RATE_WINDOW_S, take to drain at the rate requests have been finishing
(at least `retry_after_s`, at most RETRY_AFTER_MAX_S). Counting the refused spreads their
returns: told the waiting queue's drain time alone, they all came back together and most were
refused again, a refusal for every answer at 256 clients (each costs the proxy and the replica).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akasha_ray.errors import Unavailable

# Routes with a deadline of their own: a migration pass may take minutes (the migrator goes on
# after the caller gives up); /healthz must answer under load, so it is not queued.
OWN_DEADLINE_S = {"/v1/tiers/migrate": 600.0}
UNQUEUED = {"/healthz"}
RETRY_AFTER_MAX_S = 60.0
RATE_WINDOW_S = 10.0  # finishing rate: requests finished within the last this many seconds


@dataclass
class Limits:
    ongoing: int = 32
    queued: int = 64
    deadline_s: float = 180.0
    retry_after_s: float = 1.0


class Admission:
    """ASGI middleware; `configure` sets the limits once the replica has read its settings."""

    limits = Limits()

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._running = 0
        self._waiting = 0
        self._turn = asyncio.Condition()
        self._finished: deque[float] = deque()  # when admitted requests finished, last window
        self._refused: deque[float] = deque()  # when requests were refused, last window

    @classmethod
    def configure(cls, limits: Limits) -> None:
        cls.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNQUEUED:
            await self.app(scope, receive, send)
            return
        limits = self.limits
        if self._running >= limits.ongoing and self._waiting >= limits.queued:
            why = f"busy: {self._waiting} requests already wait (retry)"
            retry_after_s = self.retry_after_s()
            self._refused.append(time.monotonic())
            await _refuse(send, why, retry_after_s)
            return
        async with self._turn:
            self._waiting += 1
            try:
                await self._turn.wait_for(lambda: self._running < self.limits.ongoing)
            finally:
                self._waiting -= 1
            self._running += 1
        try:
            await self._run(scope, receive, send, OWN_DEADLINE_S.get(path, limits.deadline_s))
        finally:
            self._note_finished()
            async with self._turn:
                self._running -= 1
                self._turn.notify_all()

    def _note_finished(self) -> None:
        self._finished.append(time.monotonic())
        self._forget_old()

    def _forget_old(self) -> None:
        too_old = time.monotonic() - RATE_WINDOW_S
        for times in (self._finished, self._refused):
            while times and times[0] < too_old:
                times.popleft()

    def retry_after_s(self) -> float:
        """How long the waiting and the recently refused take to drain at the recent finishing
        rate."""
        self._forget_old()
        if not self._finished:  # nothing to go by (just started): the configured least
            return self.limits.retry_after_s
        ahead = self._waiting + len(self._refused)
        drain = ahead * RATE_WINDOW_S / len(self._finished)
        return min(max(drain, self.limits.retry_after_s), RETRY_AFTER_MAX_S)

    async def _run(self, scope: Scope, receive: Receive, send: Send, deadline_s: float) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, sending), deadline_s)
        except TimeoutError:
            if not started:  # once an answer has begun, cutting it short is all that is left
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
