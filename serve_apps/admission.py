"""Bounded work at the ingress: how many requests a replica serves at once, how many wait, and for
how long one may run. Any request beyond those bounds gets a 503 JSON answer with Retry-After,
never an unbounded queue or a hung connection.

Serve's own limits (set in serve_apps/app.py) sit just outside these: Serve hands a replica up to
`max_ongoing_requests + max_queued_requests` requests, so the replica itself answers the overflow
in Akasha's error format; Serve's proxy rejects what is beyond even that (its 503, plain text,
also with Retry-After), and its `request_timeout_s` is a backstop behind the deadline here.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akasha_ray.errors import Unavailable

# Routes with a deadline of their own: a migration pass may take minutes (the migrator goes on
# after the caller gives up); /healthz must answer under load, so it is not queued.
OWN_DEADLINE_S = {"/v1/tiers/migrate": 600.0}
UNQUEUED = {"/healthz"}


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
            await _refuse(send, f"busy: {self._waiting} requests already wait (retry)", limits)
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
            async with self._turn:
                self._running -= 1
                self._turn.notify_all()

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
                await _refuse(send, f"no answer within {deadline_s:g} s (retry)", self.limits)


async def _refuse(send: Send, why: str, limits: Limits) -> None:
    body = json.dumps(Unavailable(why).to_dict()).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(max(1, math.ceil(limits.retry_after_s))).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
