"""The cold tier: memories as Parquet files in the objects seam (a local folder or an S3 bucket).

Layout under the `cold/` prefix:
- `cold/day=2026-01-03/system=<id>/<uuid7>.until-2026-01-31.parquet`: the memories
  (records.SCHEMA) one write stored for one system (its id percent-encoded) within one UTC month,
  sorted by created_at; the first day of their creation names the folder, the last the file
  (`<uuid7>.parquet` when both are that day). A month per file, not a day: a batch of 500
  memories spread over 400 days writes some 14 files, not 400, and a search has that many fewer
  to read. A search reads only the files whose days overlap its range and whose system matches
  its filters, and ranks their rows by exact cosine (or BM25) in numpy. Files are decoded once
  and kept in memory (`cold_cache.py`, bounded by `tiers.cold_cache_mb`), and the listing of
  files is kept LISTING_TTL_S (this owner's own writes refresh it at once), so a repeated search
  of a system's archive reads nothing.
- `cold/_keys/<uuid7>.parquet`: (key, file) hints naming the data file each memory key
  (`<system_id>/<id>`, see `akasha_ray.identity`) went to, written before the data files, so that
  `get`, `fetch`, `delete`, `existing` and the idempotency check read only the files that may hold
  a key, and only in that key's own system partition. A hint is only a hint: the data file decides
  (a crash between the two writes leaves a hint to a file that does not exist, which is ignored).
  Hint files are merged once there are more than HINT_FILES_MAX of them. (Hints of earlier
  versions, keyed by id alone, were under `cold/_index/` and are not read.)

A memory's folder follows from the rows written with it, and a data file is replaced whole
(atomically, by the seam's contract) when a delete removes rows from it, even when that leaves it
empty, so a file a reader has listed is still there to open. One writer at a time: the
owner (one actor or job) holds this store; any number of readers may search.

Durability: every write is durable when `put` returns (a local folder fsyncs each file and its
folders, see objects/local.py; an S3 PUT is durable once completed), so `make_durable` has
nothing left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from akasha_ray.config import ObjectsConfig
from akasha_ray.errors import InvalidInput, NotFound
from akasha_ray.identity import SEPARATOR, first_per_key, key_array, keys_of, split_key
from akasha_ray.ids import new_id
from akasha_ray.objects import ObjectStore, open_object_store
from akasha_ray.objects.base import ObjectInfo
from akasha_ray.objects.local import LocalObjectStore
from akasha_ray.records import SCHEMA
from akasha_ray.times import from_us, to_us
from akasha_ray.vectors.base import normalized
from akasha_ray.vectors.cold_cache import Partition, PartitionCache, Stack, created_within
from akasha_ray.vectors.summaries import ALL, Entry, Summaries

PREFIX = "cold"
HINT_FILES_MAX = 64
FETCH_CONCURRENCY = 16
LISTING_TTL_S = 30.0  # how stale a listing may be for a write by another process to show
DEFAULT_CACHE_BYTES = 256 * 2**20
HINTS = "_keys"
UNTIL = ".until-"  # in a data file's name: the last day of its rows
_ROW_SQL = (
    "SELECT id, system_id, conversation_id, content, epoch_us(created_at) AS created_us, "
    "metadata, model, model_revision"
)
_KEY_SQL = "(system_id || $sep || id)"  # a row's memory key, as identity.memory_key makes it
_HINT_SCHEMA = pa.schema([("key", pa.string()), ("file", pa.string())])


class ColdStore:
    """Open with `ColdStore(objects)` or `ColdStore.open(config, data_dir)`."""

    def __init__(
        self, objects: ObjectStore, prefix: str = PREFIX, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self.objects = objects
        self.prefix = prefix.strip("/")
        self._write_lock = asyncio.Lock()
        self._partitions = PartitionCache(cache_bytes)
        self._listing: tuple[float, list[ObjectInfo]] | None = None  # (when, data files)
        self._hint_cache: dict[str, pa.Table] = {}  # hint files never change: fetch each once
        # Per-system counts kept on write: a system's files are read once, on its first summary.
        self.summaries = Summaries()

    @classmethod
    def open(
        cls, config: ObjectsConfig, data_dir: Path, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> ColdStore:
        return cls(open_object_store(config, data_dir), cache_bytes=cache_bytes)

    # -- writes ------------------------------------------------------------------------------------

    async def insert(self, batch: pa.Table) -> list[str]:
        """Store the memories whose keys are new and return their keys; a resent batch is a
        no-op. A key already stored keeps its stored row, whatever this batch holds for it."""
        batch = normalized(batch)
        if batch.num_rows == 0:
            return []
        _check_names(batch)
        async with self._write_lock:
            known = list(await self._stored(keys_of(batch)))
            if known:
                batch = batch.filter(pc.invert(pc.is_in(key_array(batch), pa.array(known))))
            if batch.num_rows == 0:
                return []
            files = _partition(batch, self.prefix)
            hints = pa.table(
                {
                    "key": [k for _, part in files for k in keys_of(part)],
                    "file": [file for file, part in files for _ in range(part.num_rows)],
                },
                schema=_HINT_SCHEMA,
            )
            await self.objects.put(self._hint_key(), _parquet(hints))  # hints first: see above
            self._listing = None
            await _gather_limited([self.objects.put(key, _parquet(part)) for key, part in files])
            self.summaries.added(
                batch.column("system_id").to_pylist(),
                pc.cast(batch["created_at"], pa.int64()).to_pylist(),
            )
            await self._merge_hints_if_many()
        return keys_of(batch)

    async def make_durable(self) -> None:
        """Nothing to do: each write was durable when it returned (see the module docstring)."""
        return None

    async def delete(self, key: str) -> bool:
        return bool(await self.delete_many([key]))

    async def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete these keys (rewriting each data file that holds one); returns those found."""
        wanted = list(dict.fromkeys(keys))
        removed: set[str] = set()
        async with self._write_lock:
            for file in await self._files_of(wanted):
                try:
                    table = pq.read_table(io.BytesIO(await self.objects.get(file)))
                except NotFound:
                    continue
                hit = pc.is_in(key_array(table), pa.array(wanted, pa.string()))
                if not pc.any(hit).as_py():
                    continue
                gone = table.filter(hit)
                removed.update(keys_of(gone))
                # Replaced, never removed (even when empty): a reader that listed the file
                # can still open it.
                await self.objects.put(file, _parquet(table.filter(pc.invert(hit))))
                self._partitions.drop(file)
                self._listing = None
                self.summaries.removed(
                    gone.column("system_id").to_pylist(),
                    pc.cast(gone["created_at"], pa.int64()).to_pylist(),
                )
        return [k for k in wanted if k in removed]

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        files = await self._files_of([key])
        if not files:
            return None
        async with self._readable(files) as paths:
            rows = await asyncio.to_thread(_rows_in, paths, [key])
        return rows[0] if rows else None

    async def fetch(self, keys: Sequence[str]) -> pa.Table:
        """The stored rows of these keys (embeddings and content_hash included) in
        `records.SCHEMA`, in the order asked."""
        wanted = list(dict.fromkeys(keys))
        files = await self._files_of(wanted)
        if not files:
            return SCHEMA.empty_table()
        async with self._readable(files) as paths:
            table = await asyncio.to_thread(_table_in, paths, wanted)
        return table

    async def existing(self, keys: Sequence[str]) -> dict[str, str]:
        """The content_hash of each of these keys that the archive holds."""
        return await self._stored(list(dict.fromkeys(keys)))

    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        """Up to `limit` keys created before `cutoff`, in no particular order (reads the files
        of the days up to the cutoff's)."""
        if limit <= 0:
            return []
        last = _utc_date(cutoff)
        infos = await self.objects.list_objects(f"{self.prefix}/day=")
        files = [i.key for i in infos if (data := _data(i.key)) is not None and data.first <= last]
        if not files:
            return []
        async with self._readable(files) as paths:
            return await asyncio.to_thread(_keys_before, paths, to_us(cutoff), limit)

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        max_files: int | None = None,
    ) -> list[dict[str, Any]]:
        """Exact top-k by cosine over the files of the matching partitions, best first; more
        than `max_files` files to read is InvalidInput naming `start` (narrow the range)."""
        parts = await self._searched(k, system_ids, start, end, max_files)
        if not parts:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        stack = self._partitions.stack(parts)
        found = await asyncio.to_thread(_top_k, stack, query, k, _opt_us(start), _opt_us(end))
        return [{**part.memory(row), "similarity": score} for part, row, score in found]

    async def search_keywords(
        self,
        text: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        max_files: int | None = None,
    ) -> list[dict[str, Any]]:
        """Exact BM25 top-k (`keyword_index`) over the rows of the matching partitions that pass
        the filters, best first; each hit's `bm25` is its score. `max_files` as in `search`."""
        parts = await self._searched(k, system_ids, start, end, max_files)
        if not parts:
            return []
        stack = self._partitions.stack(parts)
        found = await asyncio.to_thread(
            _keyword_top_k, stack, text, k, _opt_us(start), _opt_us(end)
        )
        return [{**part.memory(row), "bm25": score} for part, row, score in found]

    async def _searched(
        self,
        k: int,
        system_ids: Sequence[str] | None,
        start: datetime | None,
        end: datetime | None,
        max_files: int | None,
    ) -> list[Partition]:
        """The decoded partitions a search with these filters reads."""
        if k <= 0 or (system_ids is not None and not system_ids):
            return []
        if start is not None and end is not None and start > end:
            return []
        infos = await self._partition_infos(system_ids, start, end)
        if max_files is not None and len(infos) > max_files:
            raise InvalidInput(
                f"a cold search of this range reads {len(infos)} files, more than "
                f"tiers.cold_search_max_files ({max_files}): narrow start and end, or system_ids",
                field="start",
            )
        return await self._decoded(infos)

    async def _decoded(self, infos: list[ObjectInfo]) -> list[Partition]:
        """The partitions of these files, from the cache or read now (a file deleted since it
        was listed is left out)."""
        cached = [self._partitions.get(i.key, i.size) for i in infos]
        missing = [i for i, part in zip(infos, cached, strict=True) if part is None]
        blobs = await _gather_limited([self._fetch_optional(i.key) for i in missing])
        read = await asyncio.to_thread(_decode_all, blobs)
        fresh = {}
        for info, part in zip(missing, read, strict=True):
            if part is not None:
                self._partitions.put(info.key, info.size, part)
                fresh[info.key] = part
        return [
            part or fresh.get(i.key)
            for i, part in zip(infos, cached, strict=True)
            if (part or fresh.get(i.key)) is not None
        ]

    async def stats(self) -> dict[str, Any]:
        """count, systems, oldest, newest, bytes and files (reads every file's created_at)."""
        infos = [i for i in await self.objects.list_objects(f"{self.prefix}/day=") if _data(i.key)]
        report: dict[str, Any] = {
            "count": 0,
            "systems": 0,
            "oldest": None,
            "newest": None,
            "bytes": sum(info.size for info in infos),
            "files": len(infos),
        }
        if not infos:
            return report
        async with self._readable([info.key for info in infos]) as paths:
            count, systems, oldest, newest = await asyncio.to_thread(_summary, paths)
        return {
            **report,
            "count": count,
            "systems": systems,
            "oldest": None if oldest is None else from_us(oldest),
            "newest": None if newest is None else from_us(newest),
        }

    async def summary(self, system_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """count, oldest, newest over these systems (None: the archive, with its bytes) from
        counters kept on write; a system's files are read only the first time it is asked for
        (or after a delete removed its oldest or newest memory)."""
        async with self._write_lock:  # a load must not race a write it would count twice
            missing = self.summaries.missing(system_ids)
            if missing:
                infos = await self.objects.list_objects(f"{self.prefix}/day=")
                for key in missing:
                    self.summaries.set(key, await self._load_summary(key, infos))
            report = self.summaries.report(system_ids)
        if system_ids is None:  # a listing (sizes), not a read of the files
            infos = await self.objects.list_objects(f"{self.prefix}/day=")
            report["bytes"] = sum(info.size for info in infos if _data(info.key))
        return report

    async def _load_summary(self, key: str, infos: list[Any]) -> Entry:
        part = None if key == ALL else _system_part(key)
        files = [
            i.key
            for i in infos
            if (data := _data(i.key)) is not None and part in (None, data.system)
        ]
        if not files:
            return Entry(0, None, None)
        async with self._readable(files) as paths:
            rows = await asyncio.to_thread(_system_summary, paths, None if key == ALL else key)
        return Entry(*rows)

    async def close(self) -> None:
        await self.objects.close()

    # -- internals ---------------------------------------------------------------------------------

    def _hint_key(self) -> str:
        return f"{self.prefix}/{HINTS}/{new_id()}.parquet"

    async def _files_of(self, keys: list[str]) -> list[str]:
        """The data files that may hold these keys, sorted."""
        return sorted({file for files in (await self._hints(keys)).values() for file in files})

    async def _hints(self, keys: list[str]) -> dict[str, set[str]]:
        """key -> the data files that may hold it, each in the key's own system partition (a key
        that is not one, `<system_id>/<id>`, names no file)."""
        systems = {}
        for key in keys:
            try:
                systems[key] = _system_part(split_key(key)[0])
            except ValueError:
                continue
        infos = await self.objects.list_objects(f"{self.prefix}/{HINTS}/")
        live = {info.key for info in infos}
        self._hint_cache = {k: t for k, t in self._hint_cache.items() if k in live}
        missing = [info.key for info in infos if info.key not in self._hint_cache]
        fetched = await _gather_limited([self._fetch_optional(key) for key in missing])
        for key, data in zip(missing, fetched, strict=True):
            if data is not None:
                self._hint_cache[key] = pq.read_table(io.BytesIO(data), schema=_HINT_SCHEMA)
        found: dict[str, set[str]] = defaultdict(set)
        wanted = pa.array(list(systems), pa.string())
        for table in self._hint_cache.values():
            hits = table.filter(pc.is_in(table.column("key"), wanted))
            for key, file in zip(
                hits.column("key").to_pylist(), hits.column("file").to_pylist(), strict=True
            ):
                data = _data(file)
                if data is not None and data.system == systems[key]:
                    found[key].add(file)
        return found

    async def _stored(self, keys: list[str]) -> dict[str, str]:
        """key -> content_hash of the keys among these that a data file really holds."""
        hints = await self._hints(keys)
        files = sorted({file for files in hints.values() for file in files})
        if not files:
            return {}
        async with self._readable(files) as paths:
            return await asyncio.to_thread(_hashes_in, paths, list(hints))

    async def _merge_hints_if_many(self) -> None:
        infos = await self.objects.list_objects(f"{self.prefix}/{HINTS}/")
        if len(infos) <= HINT_FILES_MAX:
            return
        await self._hints([])  # loads every hint file into the cache
        merged = pa.concat_tables([self._hint_cache[info.key] for info in infos])
        await self.objects.put(self._hint_key(), _parquet(merged))  # written before the deletes
        for info in infos:
            await self.objects.delete(info.key)
            self._hint_cache.pop(info.key, None)

    async def _fetch_optional(self, key: str) -> bytes | None:
        try:
            return await self.objects.get(key)
        except NotFound:
            return None

    async def _partition_infos(
        self, system_ids: Sequence[str] | None, start: datetime | None, end: datetime | None
    ) -> list[ObjectInfo]:
        first = None if start is None else _utc_date(start)
        last = None if end is None else _utc_date(end)
        systems = None if system_ids is None else {_system_part(s) for s in system_ids}
        found = []
        for info in await self._data_files():
            data = _data(info.key)
            if (first is not None and data.last < first) or (
                last is not None and data.first > last
            ):
                continue
            if systems is not None and data.system not in systems:
                continue
            found.append(info)
        return found

    async def _data_files(self) -> list[ObjectInfo]:
        """Every data file, as listed at most LISTING_TTL_S ago (or since this store's last
        write); the cache forgets the files that are gone."""
        if self._listing is None or time.monotonic() - self._listing[0] > LISTING_TTL_S:
            listed = time.monotonic()
            infos = await self.objects.list_objects(f"{self.prefix}/day=")
            files = [info for info in infos if _data(info.key) is not None]
            self._partitions.keep_only({info.key for info in files})
            self._listing = (listed, files)
        return self._listing[1]

    @contextlib.asynccontextmanager
    async def _readable(self, keys: list[str]) -> AsyncIterator[list[str]]:
        """Local paths DuckDB can read for these keys; missing objects are left out."""
        if isinstance(self.objects, LocalObjectStore):
            paths = [self.objects.path_of(key) for key in keys]
            yield [str(p) for p in await asyncio.to_thread(_existing, paths)]
            return
        with tempfile.TemporaryDirectory(prefix="akasha-cold-") as folder:
            blobs = await _gather_limited([self._fetch_optional(key) for key in keys])
            paths = []
            for n, blob in enumerate(blobs):
                if blob is not None:
                    path = Path(folder) / f"{n}.parquet"
                    await asyncio.to_thread(path.write_bytes, blob)
                    paths.append(str(path))
            yield paths


# -- layout ----------------------------------------------------------------------------------------


def _partition(batch: pa.Table, prefix: str) -> list[tuple[str, pa.Table]]:
    """One (key, rows sorted by created_at) per UTC month and system in the batch."""
    days = pc.strftime(batch.column("created_at"), format="%Y-%m-%d", locale="C").to_pylist()
    systems = batch.column("system_id").to_pylist()
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, (day, system) in enumerate(zip(days, systems, strict=True)):
        groups[(day[:7], system)].append(row)
    files = []
    for (_, system), rows in sorted(groups.items()):
        first, last = min(days[r] for r in rows), max(days[r] for r in rows)
        name = new_id() if first == last else f"{new_id()}{UNTIL}{last}"
        part = batch.take(pa.array(rows)).sort_by("created_at")
        files.append((f"{prefix}/day={first}/system={_system_part(system)}/{name}.parquet", part))
    return files


def row_key(row: dict[str, Any]) -> str:
    return f"{row['system_id']}{SEPARATOR}{row['id']}"


def _check_names(batch: pa.Table) -> None:
    """Ids and system ids without SEPARATOR (the API refuses them; batches from elsewhere too)."""
    for name in ("id", "system_id"):
        if pc.any(pc.match_substring(batch.column(name), SEPARATOR)).as_py():
            raise InvalidInput(f"{name} may not contain {SEPARATOR!r}", field=name)


def _system_part(system_id: str) -> str:
    return quote(system_id, safe="")


class DataFile(NamedTuple):
    first: date  # the days of its rows' creation, at most
    last: date
    system: str  # percent-encoded


def _data(key: str) -> DataFile | None:
    """What a data file's key says of it; None for any other key."""
    parts = key.split("/")
    if len(parts) != 4 or not parts[3].endswith(".parquet"):
        return None
    day, system, name = parts[1], parts[2], parts[3].removesuffix(".parquet")
    if not day.startswith("day=") or not system.startswith("system="):
        return None
    try:
        first = date.fromisoformat(day[4:])
        last = date.fromisoformat(name.split(UNTIL, 1)[1]) if UNTIL in name else first
    except ValueError:
        return None
    return DataFile(first, last, system[7:])


def _utc_date(moment: datetime) -> date:
    return from_us(to_us(moment)).date()


def _opt_us(moment: datetime | None) -> int | None:
    return None if moment is None else to_us(moment)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


async def _gather_limited(calls: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


def _existing(paths: list[Path]) -> list[Path]:
    return [path for path in paths if path.is_file()]


# -- DuckDB over the files (run in worker threads) -------------------------------------------------


def _decode_all(blobs: list[bytes | None]) -> list[Partition | None]:
    return [None if b is None else Partition.of(pq.read_table(io.BytesIO(b))) for b in blobs]


def _top_k(
    stack: Stack, query: np.ndarray, k: int, start_us: int | None, end_us: int | None
) -> list[tuple[Partition, int, float]]:
    """(partition, row, cosine) of the best k rows created in [start, end], best first."""
    norm = float(np.linalg.norm(query))
    unit = query / norm if norm else query
    rows = created_within(stack.created_us, start_us, end_us)
    scores = (stack.unit if rows.size == len(stack.row) else stack.unit[rows]) @ unit

    def ranked(wanted: int) -> np.ndarray:
        if wanted >= scores.size:
            return np.argsort(-scores, kind="stable")
        top = np.argpartition(-scores, wanted - 1)[:wanted]
        return top[np.argsort(-scores[top], kind="stable")]

    # The best 2k first: room for a key a crash mid-rewrite left twice (its best is kept); all
    # of them only when duplicates left fewer than k.
    for wanted in (2 * k, scores.size):
        best: dict[str, tuple[Partition, int, float]] = {}
        for i in ranked(wanted).tolist():
            at = int(rows[i])
            part = stack.parts[stack.part[at]]
            best.setdefault(stack.key(at), (part, int(stack.row[at]), float(scores[i])))
            if len(best) == k:
                break
        if len(best) == k or wanted >= scores.size:
            break
    return list(best.values())


def _keyword_top_k(
    stack: Stack, text: str, k: int, start_us: int | None, end_us: int | None
) -> list[tuple[Partition, int, float]]:
    """(partition, row, BM25) of the best k rows created in [start, end], best first, the
    stack's partitions ranked as one corpus (a key a crash mid-rewrite left twice counts once)."""
    index, stack_rows = stack.keywords
    rows, scores = index.search_rows(text, k, start_us=start_us, end_us=end_us)
    return [
        (stack.parts[stack.part[at]], int(stack.row[at]), float(score))
        for at, score in zip(stack_rows[rows].tolist(), scores.tolist(), strict=True)
    ]


_BY_KEY = f"{_KEY_SQL} IN (SELECT unnest($keys))"


def _rows_in(paths: list[str], keys: list[str]) -> list[dict[str, Any]]:
    """The memories of these keys, as `get` answers them, in the order of `keys`."""
    if not paths:
        return []
    with duckdb.connect() as db:
        cursor = db.execute(
            f"{_ROW_SQL} FROM read_parquet($paths) WHERE {_BY_KEY}",
            {"paths": paths, "keys": keys, "sep": SEPARATOR},
        )
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    memories: dict[str, dict[str, Any]] = {}
    for row in rows:
        created_us = row.pop("created_us")
        row["created_at"] = from_us(created_us)
        row["metadata"] = None if row["metadata"] is None else json.loads(row["metadata"])
        memories.setdefault(row_key(row), row)
    return [memories[k] for k in keys if k in memories]


def _table_in(paths: list[str], keys: list[str]) -> pa.Table:
    """The whole rows of these keys in `records.SCHEMA`, in the order of `keys`."""
    if not paths:
        return SCHEMA.empty_table()
    with duckdb.connect() as db:
        table = db.execute(
            f"SELECT {', '.join(SCHEMA.names)} FROM read_parquet($paths) WHERE {_BY_KEY}",
            {"paths": paths, "keys": keys, "sep": SEPARATOR},
        ).to_arrow_table()
    table = first_per_key(table.cast(SCHEMA))
    position = {key: n for n, key in enumerate(keys)}
    found = keys_of(table)
    order = sorted(range(table.num_rows), key=lambda n: position[found[n]])
    return table.take(pa.array(order, pa.int64()))


def _hashes_in(paths: list[str], keys: list[str]) -> dict[str, str]:
    if not paths:
        return {}
    with duckdb.connect() as db:
        rows = db.execute(
            f"SELECT {_KEY_SQL}, any_value(content_hash) FROM read_parquet($paths) "
            f"WHERE {_BY_KEY} GROUP BY ALL",
            {"paths": paths, "keys": keys, "sep": SEPARATOR},
        ).fetchall()
    return {key: content_hash for key, content_hash in rows}


def _keys_before(paths: list[str], cutoff_us: int, limit: int) -> list[str]:
    if not paths:
        return []
    with duckdb.connect() as db:
        rows = db.execute(
            f"SELECT DISTINCT {_KEY_SQL} FROM read_parquet($paths) "
            "WHERE epoch_us(created_at) < $cutoff LIMIT $limit",
            {"paths": paths, "cutoff": cutoff_us, "limit": limit, "sep": SEPARATOR},
        ).fetchall()
    return [row[0] for row in rows]


def _system_summary(paths: list[str], system_id: str | None) -> tuple[int, int | None, int | None]:
    """(rows, least and greatest created_at in us) of one system's rows (None: every row)."""
    with duckdb.connect() as db:
        count, oldest, newest = db.execute(
            "SELECT count(*), min(epoch_us(created_at)), max(epoch_us(created_at)) "
            "FROM read_parquet($paths) WHERE $system IS NULL OR system_id = $system",
            {"paths": paths, "system": system_id},
        ).fetchone()
    return int(count), oldest, newest


def _summary(paths: list[str]) -> tuple[int, int, int | None, int | None]:
    if not paths:
        return 0, 0, None, None
    with duckdb.connect() as db:
        count, systems, oldest, newest = db.execute(
            "SELECT count(*), count(DISTINCT system_id), min(epoch_us(created_at)), "
            "max(epoch_us(created_at)) FROM read_parquet($paths)",
            {"paths": paths},
        ).fetchone()
    return int(count), int(systems), oldest, newest
