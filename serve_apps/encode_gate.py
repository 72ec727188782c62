"""Encodes off the event loop, queries first.

The embedder replica's event loop must stay free (it receives every request), so every encode
runs on a worker thread: queries on one, bulk (ingest) chunks on another. A query never waits
for bulk work: it runs at once, beside at most one bulk chunk in progress. A bulk chunk waits
while queries run (at most `max_yield_s`, so a steady stream of queries cannot stall an ingest
for good). Measured on the 2-core test machine under load: a short query took 18 ms at the median
beside a running bulk encode, where waiting for a 4 x 2 KB chunk took 0.75 s.

The two threads must not share a tokenizer (Hugging Face fast tokenizers are not safe to use from
two threads at once): the embedder gives each its own model instance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueryFirst:
    def __init__(self, max_yield_s: float = 1.0) -> None:
        self.max_yield_s = max_yield_s
        self._queries = ThreadPoolExecutor(1, thread_name_prefix="encode-query")
        self._bulk = ThreadPoolExecutor(1, thread_name_prefix="encode-bulk")
        self._turn = asyncio.Condition()
        self._queries_active = 0  # waiting for or on the query thread

    @property
    def queries_active(self) -> int:
        return self._queries_active

    async def run(self, work: Callable[[], T], *, query: bool) -> T:
        """Run `work` on its thread: a query at once, a bulk chunk once no query is active."""
        loop = asyncio.get_running_loop()
        if query:
            self._queries_active += 1
            try:
                return await loop.run_in_executor(self._queries, work)
            finally:
                self._queries_active -= 1
                async with self._turn:
                    self._turn.notify_all()
        # Past max_yield_s (queries keep coming) the chunk goes anyway, beside them.
        async with self._turn:
            with contextlib.suppress(TimeoutError):
                idle = self._turn.wait_for(lambda: self._queries_active == 0)
                await asyncio.wait_for(idle, self.max_yield_s)
        return await loop.run_in_executor(self._bulk, work)

    def close(self) -> None:
        self._queries.shutdown(wait=False, cancel_futures=True)
        self._bulk.shutdown(wait=False, cancel_futures=True)
