"""The write batcher: gathers accepted points and hands them to the store in large batches.

A batch is flushed when `max_points` wait, or when the oldest waiting point is `max_delay_s` old,
whichever comes first. `add()` returns once the points are buffered (the API answers 202); a clean
`aclose()` flushes everything buffered.

What a crash can lose: the points accepted since the last successful flush, so normally at most
`max_delay_s` worth (or `max_points`, whichever is reached first), plus a flush in progress.
While the store fails, flushes are retried and points pile up to `max_pending`, after which `add()`
refuses new points with `Unavailable` (503) instead of growing without bound: a crash in that state
loses up to `max_pending` points, which `stats()` shows as `pending`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from akasha_ray.errors import AkashaError, Unavailable
from akasha_ray.timeseries.batch import PointBatch

Sink = Callable[[PointBatch], Awaitable[int]]


class WriteBatcher:
    def __init__(
        self,
        sink: Sink,
        *,
        max_points: int = 10_000,
        max_delay_s: float = 1.0,
        max_pending: int = 1_000_000,
        retry_delay_s: float = 1.0,
    ) -> None:
        self._sink = sink
        self._max_points = max_points
        self._max_delay_s = max_delay_s
        self._max_pending = max_pending
        self._retry_delay_s = retry_delay_s
        self._buffer: list[tuple[float, PointBatch]] = []  # (monotonic arrival, points)
        self._buffered = 0
        self._wake = asyncio.Event()
        self._round_done = asyncio.Event()
        self._flush_requested = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._flushed = 0
        self._failures = 0
        self._last_error: str | None = None

    def start(self) -> None:
        """Start the flusher; call once, from the event loop that will run it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ts-flusher")

    async def add(self, batch: PointBatch) -> int:
        """Buffer points for the next flush; returns how many were accepted."""
        if self._closing:
            raise Unavailable("the metrics writer is shutting down")
        if self._task is None:
            raise RuntimeError("WriteBatcher.start() was not called")
        if self._task.done():  # the flusher died of a bug: say so rather than buffer forever
            raise Unavailable("the metrics writer stopped") from self._task.exception()
        if self._buffered + len(batch) > self._max_pending:
            raise Unavailable(f"{self._buffered} metric points wait for the store; retry later")
        if not len(batch):
            return 0
        self._buffer.append((time.monotonic(), batch))
        self._buffered += len(batch)
        if self._buffered >= self._max_points or len(self._buffer) == 1:
            self._wake.set()  # flush now, or start waiting for the first point's deadline
        return len(batch)

    async def flush(self) -> None:
        """Wait until everything buffered so far is in the store; raises if a flush fails."""
        while self._buffered:
            if self._task is None or self._task.done():
                raise Unavailable("the metrics writer is not running")
            self._flush_requested = True
            self._round_done.clear()
            self._wake.set()
            await self._round_done.wait()
            if self._buffered and self._last_error is not None:
                raise Unavailable(f"metric points could not be written: {self._last_error}")

    async def aclose(self) -> None:
        """Refuse new points, flush the buffered ones, stop. Raises if the last flush failed."""
        self._closing = True
        if self._task is None:
            return
        self._wake.set()
        await self._task
        if self._buffered:
            raise Unavailable(
                f"{self._buffered} metric points could not be written: {self._last_error}"
            )

    def stats(self) -> dict[str, Any]:
        return {
            "pending": self._buffered,
            "flushed": self._flushed,
            "failures": self._failures,
            "last_error": self._last_error,
        }

    async def _run(self) -> None:
        while True:
            await self._until_due()
            if not self._buffered:
                return  # closing, and nothing left
            if not await self._flush_once() and self._closing:
                return  # aclose() reports what is left

    async def _until_due(self) -> None:
        """Return when a flush is due, or when closing with nothing buffered."""
        while True:
            if self._closing or self._flush_requested or self._buffered >= self._max_points:
                return
            if not self._buffered:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = self._buffer[0][0] + self._max_delay_s - time.monotonic()
            if wait <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                return
            self._wake.clear()

    async def _flush_once(self) -> bool:
        taken = len(self._buffer)
        batch = PointBatch.concat([points for _, points in self._buffer[:taken]])
        try:
            await self._sink(batch)
        except AkashaError as exc:  # the store is down or refused: keep the points, retry
            self._failures += 1
            self._last_error = exc.message
            self._round_done.set()
            if not self._closing:
                await asyncio.sleep(self._retry_delay_s)
            return False
        del self._buffer[:taken]  # points added while the sink ran wait for the next round
        self._buffered -= len(batch)
        self._flushed += len(batch)
        self._last_error = None
        if not self._buffered:
            self._flush_requested = False
        self._round_done.set()
        return True
