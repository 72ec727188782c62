"""The warm tier: memories in Milvus through pymilvus' `AsyncMilvusClient`.

By default a Milvus Lite file `<data_dir>/warm/milvus.db` (one process per file: one owner, the
`warm` actor); `warm.uri` (and `warm.token`) point it at a Milvus server or cluster instead.

- Start-up (milvus_setup.py) probes the configured index type and falls back to one the server can
  build and load; `stats` and `health` report which one is in use and why.
- Rows and filter expressions (milvus_rows.py): content split over three VARCHARs, metadata JSON
  plus a flag, created_at in epoch microseconds, every string quoted and escaped.
- Rows are keyed by the memory's key `<system_id>/<id>` (the primary key; `id` is a field of its
  own): the same id in two systems is two rows. The collection is COLLECTION, `memories_v2`: the
  collection of earlier versions (`akasha_memories`, keyed by id alone, without content_hash) is
  never opened as this one, only named in a warning at start-up.
- Insert is idempotent by key: the keys already stored are looked up (Strong consistency) and
  skipped, under a lock so two concurrent inserts cannot both add one key (Milvus itself would
  keep both rows). Rows go as columnar requests built from the Arrow batch (milvus_rows.py).
- Searches on Lite do not ask Lite: the owner scans its own exact in-memory index of the vectors
  and reads the hits by key (warm_vectors.py says why). On Lite the collection's index is FLAT,
  which costs nothing to build, whatever `warm.index_type` says (that is for servers).
- Lite keeps new rows in a memtable until a flush; its scans read that memtable row by row in
  Python (20,000 unflushed rows cost about a second a query), while reads by key find them in a
  dict. So on Lite an insert leaves its rows unflushed, and the store flushes before its next scan
  (keys_before, stats) or when `flush()` is called (a migration does, once at its end). A server
  seals segments itself; an explicit flush there costs seconds, so `flush()` does nothing on a
  server.
- Durability (`make_durable`): on Lite, an acknowledged insert is in the OS page cache (it
  survives a `kill -9` of any process, not a power cut); `make_durable` fsyncs what Lite wrote
  (lite_files.py says what and what is left: its background compaction). After a flush (ours, or
  Lite's own inside an insert) the store syncs again at once, as a flush moves rows out of the WAL
  into files Lite does not fsync. On a server, an insert is acknowledged once it is in the
  server's log broker (its WAL: RocksMQ on disk in standalone, Pulsar or Kafka in a cluster), so
  `make_durable` has nothing to do; how that log survives a power cut is the broker's
  configuration. A server flush (sealing segments into object storage) would add nothing to that
  and costs seconds a call.
- Searches and reads by key wait on the server's clock only right after this owner wrote a system
  they cover (Session); otherwise they read Bounded, which sees every older write
  (recent_writes.py).
- Each call to Milvus has a fixed cost, so concurrent `search` calls with the same k and filters
  go together as one multi-vector search (on Lite, one read of their hits by key); `search_many`
  does the same for a caller holding several query vectors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus import AsyncMilvusClient, MilvusClient
from pymilvus.client import ts_utils
from pymilvus.client.call_context import _api_level_md
from pymilvus.client.types import LoadState
from pymilvus.client.utils import check_status
from pymilvus.grpc_gen import milvus_pb2

from akasha_ray.config import WarmConfig
from akasha_ray.errors import Unavailable
from akasha_ray.identity import key_array, keys_of, split_key
from akasha_ray.records import time_us_of
from akasha_ray.times import from_us, to_us
from akasha_ray.vectors.base import normalized
from akasha_ray.vectors.flat_index import FlatIndex
from akasha_ray.vectors.lite_files import LiteFiles
from akasha_ray.vectors.milvus_rows import (
    FETCH_FIELDS,
    ROW_FIELDS,
    SearchFilter,
    batched,
    insert_requests,
    key_in,
    memory_of,
    quote,
    table_of,
)
from akasha_ray.vectors.milvus_setup import (
    ERRORS,
    IndexChoice,
    flat_on_lite,
    message_of,
    prepare_collection,
    search_params,
)
from akasha_ray.vectors.recent_writes import RecentWrites
from akasha_ray.vectors.summaries import ALL, Entry, Summaries
from akasha_ray.vectors.warm_keywords import WarmKeywords
from akasha_ray.vectors.warm_vectors import WarmVectors

logger = logging.getLogger("akasha.warm")

# A new name for the keyed schema: an older data dir's `akasha_memories` (keyed by id alone) is
# never read as this collection.
COLLECTION = "memories_v2"
OLD_COLLECTIONS = ("akasha_memories",)
KEY_QUERY_CHUNK = 5000  # keys per `key in [...]` query for keys alone (one 5,000-key query took
# a quarter of the time of ten 500-key ones, on Lite and on a server)
ROW_QUERY_CHUNK = 500  # keys per query for whole rows (content can be 128 KiB a row)
MAX_SEARCH_BATCH = 64  # query vectors per Milvus search call
MAX_QUERY_WINDOW = 16_384  # Milvus' largest query limit
# pymilvus waits for a hung server forever; searchers give up long before this (they answer
# partial), but without a deadline their calls would pile up in the warm actor.
SEARCH_DEADLINE_S = 30


def lite_file(data_dir: Path) -> Path:
    return Path(data_dir) / "warm" / "milvus.db"


class MilvusStore:
    """The warm store. Open with `await MilvusStore.open(config, data_dir)`; one owner per file."""

    def __init__(
        self,
        client: AsyncMilvusClient,
        collection: str,
        index: IndexChoice,
        *,
        lite_path: Path | None,
        where: str,
    ) -> None:
        self._client = client
        self.collection = collection
        self.index = index
        self._lite_path = lite_path
        self._lite_files = None if lite_path is None else LiteFiles(lite_path.parent, collection)
        self._where = where
        self._write_lock = asyncio.Lock()
        self._unflushed = 0  # rows inserted into Lite since its last flush
        self._coalescer = _Coalescer(self._search_filter, MAX_SEARCH_BATCH)
        # Per-system counts kept on write; a system is counted by Milvus (a query within its
        # partition-key bucket) the first time it is asked for, or after a delete.
        self.summaries = Summaries()
        # BM25 beside Milvus (warm_keywords.py)
        self.keywords = WarmKeywords(client, collection, lite_path)
        # Lite: the exact vector index the owner searches in place of Lite's (warm_vectors.py).
        self.vectors = None if lite_path is None else WarmVectors(client, collection, lite_path)
        self._vectors_built: asyncio.Task | None = None
        self.recent = RecentWrites()  # the consistency a search needs (recent_writes.py)

    @classmethod
    async def open(
        cls,
        config: WarmConfig,
        data_dir: Path,
        *,
        collection: str = COLLECTION,
        probe_timeout_s: float = 30.0,
    ) -> MilvusStore:
        """Connect; create the collection (after probing the index type) or load it."""
        lite_path = None if config.uri else lite_file(data_dir)
        if lite_path is not None:
            lite_path.parent.mkdir(parents=True, exist_ok=True)
        uri = config.uri or str(lite_path)
        where = f"Milvus Lite at {lite_path}" if lite_path else f"Milvus at {config.uri}"
        token = config.token.get_secret_value() if config.token else ""
        index_type = config.index_type if config.uri else "FLAT"  # Lite: searched in memory
        with _unavailable(f"cannot open the warm tier on {where}"):
            index = await asyncio.to_thread(
                _prepare, uri, token, collection, index_type, probe_timeout_s, lite_path is not None
            )
        if index.fallback_reason:
            logger.warning(
                "warm tier on %s: using a %s index, not the configured %s: %s",
                where,
                index.in_use,
                index.requested,
                index.fallback_reason,
            )
        client = AsyncMilvusClient(uri=uri, token=token)
        store = cls(client, collection, index, lite_path=lite_path, where=where)
        if store.vectors is not None:  # start reading the vectors now, not at the first search
            store._vectors_built = asyncio.create_task(store._build_vectors_early())
        return store

    # -- writes ------------------------------------------------------------------------------------

    async def insert(self, batch: pa.Table) -> list[str]:
        """Store the memories whose keys are new and return their keys; a resent batch is a
        no-op. A key already stored keeps its stored row, whatever this batch holds for it."""
        batch = normalized(batch)
        if batch.num_rows == 0:
            return []
        async with self._write_lock:
            with _unavailable("warm insert failed"):
                known = list(await self._existing(keys_of(batch)))
                if known:
                    batch = batch.filter(pc.invert(pc.is_in(key_array(batch), pa.array(known))))
                # Every row is checked before the first request goes.
                requests = list(insert_requests(self.collection, batch))
                systems = batch.column("system_id").to_pylist()
                # Before the first request: a failed insert may leave rows that a retry finds
                # stored and acknowledges.
                self.recent.wrote(set(systems))
                with self._indexes_in_step():
                    for request in requests:
                        await self._send_insert(request)
                    if self.vectors is not None:
                        self.vectors.added(batch)
                    self.keywords.added(batch)
                self.summaries.added(systems, time_us_of(batch).tolist())
                if self._lite_path is not None:
                    self._unflushed += batch.num_rows
            await self._after_lite_write()
        return keys_of(batch)

    async def make_durable(self) -> None:
        """Every row inserted so far survives a `kill -9` and a power cut once this returns.
        Lite: fsync its new and changed files; a server: nothing (see the module docstring)."""
        if self._lite_files is None:
            return
        async with self._write_lock:
            await self._sync_lite()

    async def flush(self) -> None:
        """Lite: turn rows inserted since the last flush into segments, so that scans stop
        reading them row by row, and sync them (the flush took them out of the WAL). A server:
        nothing (it seals segments itself)."""
        if not self._unflushed:
            return
        async with self._write_lock:
            await self.flush_locked()

    async def flush_locked(self, *, force: bool = False) -> None:
        """`flush` for a caller holding the write lock; `force`: even with nothing inserted since
        the last flush (Lite may have replayed its WAL into the memtable on opening)."""
        if self._unflushed or (force and self._lite_path is not None):
            with _unavailable("warm flush failed"):
                await self._client.flush(self.collection)
            self._unflushed = 0
            await self._sync_lite()

    async def _after_lite_write(self) -> None:
        """After a write on Lite (under the write lock): if Lite flushed inside it, the rows of
        the replaced WAL are now in files it did not sync; sync them."""
        if self._lite_files is not None and self._lite_files.wal_replaced():
            await self._sync_lite()

    async def _sync_lite(self) -> None:
        if self._lite_files is not None:
            with _unavailable(f"warm sync of {self._where} failed", OSError):
                await asyncio.to_thread(self._lite_files.sync)
                self._lite_files.wal_replaced()  # what a flush changed is synced now

    async def _send_insert(self, request: milvus_pb2.InsertRequest) -> None:
        """One prepared insert request, sent as pymilvus' own `insert` sends its request (pinned
        pymilvus 3.0.2: its handler's stub, the call context and the write timestamp that
        Session reads wait for); `insert` itself takes only rows."""
        connection = await self._client._get_connection()
        context = self._client._generate_call_context()
        response = await connection._async_stub.Insert(
            request=request, metadata=_api_level_md(context)
        )
        check_status(response.status)
        ts_utils.update_collection_ts(
            self.collection,
            response.timestamp,
            connection.server_address,
            context.get_db_name(),
        )

    async def delete(self, key: str) -> bool:
        return bool(await self.delete_many([key]))

    async def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete these keys; returns those that were there."""
        async with self._write_lock:  # an insert's check-then-write must not interleave
            with _unavailable("warm delete failed"):
                present = set(await self._existing(list(keys)))
                systems = [split_key(k)[0] for k in present]
                self.recent.wrote(systems)
                with self._indexes_in_step():
                    for chunk in batched(sorted(present), KEY_QUERY_CHUNK):
                        await self._client.delete(self.collection, filter=key_in(chunk))
                    if self.vectors is not None:
                        self.vectors.removed(present)
                    self.keywords.removed(sorted(present))
                # Times unknown here: the touched systems' bounds are counted again when asked.
                self.summaries.removed(systems)
                if present and self._lite_path is None:
                    # Milvus 2.3.5 answers a Session read right after a delete with the deleted
                    # row still there (seen with `get`); a Strong read waits until the delete
                    # is applied, so later reads of this client see it (about 0.3 s).
                    await self._existing(sorted(present))
            if present:
                await self._after_lite_write()
        return [k for k in dict.fromkeys(keys) if k in present]

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        with _unavailable("warm get failed"):
            rows = await self._client.query(
                self.collection,
                filter=key_in([key]),
                output_fields=list(ROW_FIELDS),
                consistency_level=self.recent.consistency(_systems_of(key)),
            )
        return memory_of(rows[0]) if rows else None

    async def fetch(self, keys: Sequence[str]) -> pa.Table:
        """The stored rows of these keys (embeddings and content_hash included) in
        `records.SCHEMA`, in the order asked."""
        wanted = list(dict.fromkeys(keys))
        with _unavailable("warm fetch failed"):
            rows = await self._by_keys(wanted, ["key", *FETCH_FIELDS])
        found = {row["key"]: row for row in rows}
        return table_of([found[k] for k in wanted if k in found])

    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        """Up to `limit` (at most 16,384) keys created before `cutoff`, in no particular order."""
        if limit <= 0:
            return []
        await self.flush()
        with _unavailable("warm keys_before failed"):
            rows = await self._client.query(
                self.collection,
                filter=f"created_at < {to_us(cutoff)}",
                output_fields=["key"],
                limit=min(limit, MAX_QUERY_WINDOW),
                consistency_level="Strong",
            )
        return [row["key"] for row in rows]

    async def keys_between(self, start_us: int, end_us: int, limit: int) -> list[str]:
        """Up to `limit` (at most 16,384) keys created in [start_us, end_us), in no particular
        order: DR snapshots page through warm by time windows with it."""
        if limit <= 0:
            return []
        await self.flush()
        with _unavailable("warm keys_between failed"):
            rows = await self._client.query(
                self.collection,
                filter=f"created_at >= {int(start_us)} and created_at < {int(end_us)}",
                output_fields=["key"],
                limit=min(limit, MAX_QUERY_WINDOW),
                consistency_level="Strong",
            )
        return [row["key"] for row in rows]

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One query; concurrent calls with the same k and filters share one Milvus call."""
        key = SearchFilter.of(k, system_ids, start, end)
        if key.matches_nothing:
            return []
        return await self._coalescer.submit(key, np.asarray(vector, dtype=np.float32))

    async def search_keywords(
        self,
        text: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Exact BM25 top-k from the warm keyword index (built on first use), filters applied
        before ranking, best first; each hit's `bm25` is its score."""
        if k <= 0 or system_ids == [] or (start and end and start > end):
            return []
        if self.keywords.index is None:
            async with self._write_lock:
                if self.keywords.index is None:
                    await self.flush_locked(force=True)
                    with _unavailable("warm keyword index build failed"):
                        await self.keywords.build(self._time_bounds)
        found, scores = self.keywords.index.search(
            text,
            k,
            system_ids,
            None if start is None else to_us(start),
            None if end is None else to_us(end),
        )
        if not found:
            return []
        by_key = await self._memories(found, system_ids, "warm keyword search")
        return [
            {**by_key[key], "bm25": score}
            for key, score in zip(found, scores.tolist(), strict=True)
            if key in by_key
        ]

    async def search_many(
        self,
        vectors: Sequence[np.ndarray] | np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Several queries with the same filters in one call: one hit list per vector."""
        key = SearchFilter.of(k, system_ids, start, end)
        queries = [np.asarray(v, dtype=np.float32) for v in vectors]
        if key.matches_nothing:
            return [[] for _ in queries]
        results: list[list[dict[str, Any]]] = []
        for chunk in batched(queries, MAX_SEARCH_BATCH):
            results.extend(await self._search_filter(key, chunk))
        return results

    async def _search_filter(
        self, key: SearchFilter, queries: list[np.ndarray]
    ) -> list[list[dict[str, Any]]]:
        if self.vectors is not None:
            return await self._search_in_memory(key, queries)
        with _unavailable("warm search failed"):
            answers = await self._client.search(
                self.collection,
                data=queries,
                anns_field="embedding",
                limit=key.k,
                filter=key.expression(),
                output_fields=list(ROW_FIELDS),
                consistency_level=self.recent.consistency(key.system_ids),
                search_params=search_params(
                    self.index.in_use,
                    key.k,
                    lite=self._lite_path is not None,
                    filtered=bool(key.expression()),
                ),
                timeout=SEARCH_DEADLINE_S,
            )
        return [
            [{**memory_of(hit["entity"]), "similarity": hit["distance"]} for hit in hits]
            for hits in answers
        ]

    async def _search_in_memory(
        self, key: SearchFilter, queries: list[np.ndarray]
    ) -> list[list[dict[str, Any]]]:
        """Lite: the exact top k of each query from the owner's index, then the hits' rows."""
        index = await self._vector_index()
        found = []
        for q in queries:
            unit = q / (np.linalg.norm(q) or 1.0)
            found.append(index.search(unit, key.k, key.system_ids, key.start_us, key.end_us))
            await asyncio.sleep(0)  # a scan of a million rows takes tens of ms: let others in
        wanted = [k for keys, _ in found for k in keys]
        if not wanted:
            return [[] for _ in queries]
        by_key = await self._memories(wanted, key.system_ids, "warm search")
        return [
            [
                {**by_key[k], "similarity": score}
                for k, score in zip(keys, scores.tolist(), strict=True)
                if k in by_key
            ]
            for keys, scores in found
        ]

    async def _memories(
        self, keys: list[str], system_ids: Sequence[str] | None, what: str
    ) -> dict[str, dict[str, Any]]:
        """A search's hits read by key, with the consistency its systems need, by key."""
        with _unavailable(f"{what} failed"):
            consistency = self.recent.consistency(system_ids)
            rows = await self._by_keys(keys, ["key", *ROW_FIELDS], consistency=consistency)
        return {row["key"]: memory_of(row) for row in rows}

    async def _vector_index(self) -> FlatIndex:
        """Lite: the owner's vector index, read from the collection first if need be."""
        if self.vectors.index is None:
            async with self._write_lock:
                if self.vectors.index is None:
                    started = time.perf_counter()
                    await self.flush_locked(force=True)
                    with _unavailable("warm vector index build failed"):
                        await self.vectors.build(self._time_bounds)
                        logger.info(
                            "warm tier: %d vectors read into memory in %.1f s",
                            len(self.vectors.index),
                            time.perf_counter() - started,
                        )
        return self.vectors.index

    async def _build_vectors_early(self) -> None:
        try:
            await self._vector_index()
        except Unavailable as exc:  # the first search tries again
            logger.warning("warm tier: %s", exc)

    @contextmanager
    def _indexes_in_step(self) -> Iterator[None]:
        """A write that fails part way leaves what the in-memory indexes should hold unknown:
        they are read from the collection again when next needed."""
        try:
            yield
        except BaseException:
            if self.vectors is not None:
                self.vectors.forget()
            self.keywords.forget()
            raise

    # -- state -------------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """count, oldest, newest, bytes (Lite: its files' size; a server does not say: None)."""
        await self.flush()
        with _unavailable("warm stats failed"):
            count = await self._count()
            oldest, newest = await self._time_bounds()
        return {
            "count": count,
            "oldest": None if oldest is None else from_us(oldest),
            "newest": None if newest is None else from_us(newest),
            "bytes": _folder_bytes(self._lite_path) if self._lite_path else None,
            "index": asdict(self.index),
        }

    async def summary(self, system_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """count, oldest, newest over these systems (None: the collection, with Lite's bytes)
        from counters kept on write; Milvus is asked only for a system not counted yet, or
        whose bounds a delete made stale."""
        async with self._write_lock:  # a count must not race a write it would count twice
            missing = self.summaries.missing(system_ids)
            if missing:
                await self.flush_locked()
            for key in missing:
                with _unavailable("warm summary failed"):
                    self.summaries.set(key, await self._load_summary(key))
            report = self.summaries.report(system_ids)
        if system_ids is None:
            report["bytes"] = _folder_bytes(self._lite_path) if self._lite_path else None
        return report

    async def _load_summary(self, key: str) -> Entry:
        where = "" if key == ALL else f"system_id == {quote(key)}"
        rows = await self._client.query(
            self.collection, filter=where, output_fields=["count(*)"], consistency_level="Strong"
        )
        count = int(rows[0]["count(*)"])
        if count == 0:
            return Entry(0, None, None)
        oldest = await self._extreme(min, "<", where)
        newest = await self._extreme(max, ">", where)
        return Entry(count, oldest, newest)

    async def health(self) -> dict[str, Any]:
        """reachable, collection loaded, index type and build state; never raises."""
        report: dict[str, Any] = {
            "where": self._where,
            "collection": self.collection,
            "index_requested": self.index.requested,
            "index_type": self.index.in_use,
            "index_fallback_reason": self.index.fallback_reason,
        }
        try:
            version = await self._client.get_server_version(timeout=5)
            state = await self._client.get_load_state(self.collection, timeout=5)
            index = await self._client.describe_index(self.collection, "embedding", timeout=5)
        except ERRORS as exc:
            return {**report, "reachable": False, "loaded": False, "error": message_of(exc)}
        return {
            **report,
            "reachable": True,
            "server_version": version,
            "loaded": state.get("state") == LoadState.Loaded,
            "index_state": index.get("state"),
            "indexed_rows": index.get("indexed_rows"),
            "pending_index_rows": index.get("pending_index_rows"),
        }

    async def close(self) -> None:
        if self._vectors_built is not None:
            self._vectors_built.cancel()
        try:
            await self.flush()  # Lite: reopening then replays no WAL (and the flush is synced)
        finally:
            await self._client.close()

    # -- internals ---------------------------------------------------------------------------------

    async def existing(self, keys: Sequence[str]) -> dict[str, str]:
        """The content_hash of each of these keys that the collection holds.

        As this process sees the collection: every write it made is visible (Session). Strong
        would also wait for other clients' writes: about 0.3 s a call on Milvus 2.3.5, against
        0.08 s. Insert and delete check under Strong."""
        with _unavailable("warm existing failed"):
            return await self._existing(list(keys), consistency="Session")

    async def _existing(self, keys: list[str], consistency: str = "Strong") -> dict[str, str]:
        rows = await self._by_keys(keys, ["key", "content_hash"], KEY_QUERY_CHUNK, consistency)
        return {row["key"]: row["content_hash"] for row in rows}

    async def _by_keys(
        self,
        keys: Sequence[str],
        fields: list[str],
        chunk_size: int = ROW_QUERY_CHUNK,
        consistency: str = "Strong",
    ) -> list[dict[str, Any]]:
        """Rows of these keys, read Strong by default; the chunks go at once (each waits on the
        server's clock to catch up, so one after another would add that wait per chunk)."""
        answers = await asyncio.gather(
            *(
                self._client.query(
                    self.collection,
                    filter=key_in(chunk),
                    output_fields=fields,
                    consistency_level=consistency,
                )
                for chunk in batched(list(dict.fromkeys(keys)), chunk_size)
            )
        )
        return [row for rows in answers for row in rows]

    async def _count(self) -> int:
        rows = await self._client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])

    async def _time_bounds(self) -> tuple[int | None, int | None]:
        return await self._extreme(min, "<"), await self._extreme(max, ">")

    async def _extreme(
        self, pick: Callable[[Iterable[int]], int], beyond: str, where: str = ""
    ) -> int | None:
        """The least (or greatest) created_at. Milvus 2.3 and Lite have no min/max or ORDER BY,
        so: take a page of times, then a page of those beyond its extreme, until none are left.
        A page is any 16,384 rows, so each round leaves about 1/16,384 of the rows: two or three
        rounds, where bisecting on existence took about 100 queries (each a scan on Lite)."""
        bound: int | None = None
        while True:
            first = bound is None
            terms = [t for t in (where, not first and f"created_at {beyond} {bound}") if t]
            expression = " and ".join(f"({t})" for t in terms)
            rows = await self._client.query(
                self.collection,
                filter=expression,
                output_fields=["created_at"],
                limit=MAX_QUERY_WINDOW,
                consistency_level="Strong",
            )
            if not rows:
                return bound
            bound = pick(int(row["created_at"]) for row in rows)
            if len(rows) < MAX_QUERY_WINDOW and first:
                return bound  # that page was every row


def _prepare(
    uri: str, token: str, collection: str, index_type: str, probe_timeout_s: float, lite: bool
) -> IndexChoice:
    client = MilvusClient(uri=uri, token=token)
    try:
        for old in OLD_COLLECTIONS:
            if old != collection and client.has_collection(old):
                logger.warning(
                    "warm tier: collection %r of an earlier Akasha (keyed by id alone) is not "
                    "read; this version uses %r",
                    old,
                    collection,
                )
        if lite:
            flat_on_lite(client, collection)
        return prepare_collection(client, collection, index_type, probe_timeout_s)
    finally:
        client.close()


class _Coalescer:
    """Queues concurrent searches by filter; while one call for a filter is in flight the next
    ones wait, then go together: a burst costs one round trip instead of one each."""

    def __init__(
        self,
        run: Callable[[SearchFilter, list[np.ndarray]], Awaitable[list[list[dict[str, Any]]]]],
        max_batch: int,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._queues: dict[SearchFilter, list[tuple[np.ndarray, asyncio.Future]]] = {}
        self._drains: set[asyncio.Task] = set()

    async def submit(self, key: SearchFilter, vector: np.ndarray) -> list[dict[str, Any]]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
            task = asyncio.create_task(self._drain(key))
            self._drains.add(task)  # keep a reference until it ends
            task.add_done_callback(self._drains.discard)
        queue.append((vector, future))
        return await future

    async def _drain(self, key: SearchFilter) -> None:
        try:
            while queue := self._queues[key]:
                batch, self._queues[key] = queue[: self._max_batch], queue[self._max_batch :]
                try:
                    answers = await self._run(key, [vector for vector, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), hits in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(hits)
        finally:
            del self._queues[key]


def _folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@contextmanager
def _unavailable(what: str, *more: type[BaseException]) -> Iterator[None]:
    """Milvus and transport errors (and `more`) as `Unavailable` (HTTP 503), naming what failed."""
    try:
        yield
    except (*ERRORS, *more) as exc:
        raise Unavailable(f"{what}: {message_of(exc)}") from exc


def _systems_of(key: str) -> list[str] | None:
    """The system a key belongs to, as `RecentWrites.consistency` takes it (None, every system:
    not a memory key, which the store looks up all the same)."""
    try:
        return [split_key(key)[0]]
    except ValueError:
        return None
