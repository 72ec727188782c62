"""One congruence suite (tests/servers/vector_suite.py) against every vector store: the hot shard
(through AsyncHotShard), Milvus Lite, a real Milvus 2.3.5 server (in its own network namespace),
and the cold Parquet tier on a local folder and on a real SeaweedFS S3 server.

Each store is opened and loaded with the data set once per backend; every scenario leaves it as
it found it. A server that cannot start fails the run (no skips).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import pytest_asyncio
from pymilvus import AsyncMilvusClient, MilvusClient
from pymilvus.exceptions import MilvusException

from akasha_ray.config import ObjectsConfig, WarmConfig
from akasha_ray.errors import Unavailable
from akasha_ray.objects import open_object_store
from akasha_ray.objects.s3 import S3ObjectStore
from akasha_ray.records import time_us_of, vectors_of
from akasha_ray.vectors import milvus_windows
from akasha_ray.vectors.base import AsyncHotShard, VectorStore
from akasha_ray.vectors.cold_store import ColdStore
from akasha_ray.vectors.lite_rows import live_rows
from akasha_ray.vectors.milvus_setup import IndexChoice, index_params
from akasha_ray.vectors.milvus_store import COLLECTION, MilvusStore, lite_file
from akasha_ray.vectors.milvus_windows import every_row, rows_by_time
from tests.servers import seaweedfs
from tests.servers.milvus_server import milvus_server
from tests.servers.seaweedfs import seaweedfs_server
from tests.servers.vector_suite import SCENARIOS, DataSet, key_of, load, make_dataset

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

BACKENDS = ["hot", "milvus-lite", "milvus-server", "cold-local", "cold-s3"]
EXACT = {"hot", "milvus-lite", "cold-local", "cold-s3"}  # Lite: searched in memory
SERVER_PROBE_TIMEOUT_S = 8.0  # DISKANN never finishes building on 2.3.5: give up after this


@pytest.fixture(scope="module")
def data() -> DataSet:
    return make_dataset()


@pytest.fixture(scope="module")
def milvus():
    with milvus_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3():
    with seaweedfs_server(bucket="akasha-cold") as server:
        yield server


def s3_store(server: seaweedfs.S3Server, prefix: str) -> S3ObjectStore:
    return S3ObjectStore.from_url(
        f"s3://{server.bucket}/{prefix}",
        endpoint_url=server.endpoint_url,
        region_name=seaweedfs.REGION,
        aws_access_key_id=seaweedfs.ACCESS_KEY,
        aws_secret_access_key=seaweedfs.SECRET_KEY,
    )


async def open_store(backend: str, request: pytest.FixtureRequest, folder: Path) -> VectorStore:
    if backend == "hot":
        return await AsyncHotShard.open(folder / "hot.duckdb")
    if backend == "milvus-lite":
        return await MilvusStore.open(WarmConfig(), folder)
    if backend == "milvus-server":
        # The cluster setting, DISKANN, against a server that cannot build it: the store must
        # notice at start-up and run the suite on its fallback.
        server = request.getfixturevalue("milvus")
        config = WarmConfig(uri=server.uri, index_type="DISKANN")
        return await MilvusStore.open(config, folder, probe_timeout_s=SERVER_PROBE_TIMEOUT_S)
    if backend == "cold-local":
        return ColdStore(open_object_store(ObjectsConfig(), folder))
    if backend == "cold-s3":
        return ColdStore(s3_store(request.getfixturevalue("s3"), "congruence"))
    raise AssertionError(backend)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def loaded(request, data, tmp_path_factory):
    started = time.perf_counter()
    store = await open_store(request.param, request, tmp_path_factory.mktemp(request.param))
    opened = time.perf_counter()
    await load(store, data)
    print(
        f"\n{request.param}: opened in {opened - started:.2f}s (servers included), "
        f"loaded {len(data.ids)} in {time.perf_counter() - opened:.2f}s"
    )
    yield request.param, store
    await store.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("scenario_"))
async def test_congruence(loaded, data, scenario):
    backend, store = loaded
    await scenario(store, data, backend in EXACT)


# -- warm-tier specifics ---------------------------------------------------------------------------


async def test_milvus_server_reports_its_diskann_fallback(milvus, data, tmp_path):
    store = await MilvusStore.open(
        WarmConfig(uri=milvus.uri, index_type="DISKANN"),
        tmp_path,
        probe_timeout_s=SERVER_PROBE_TIMEOUT_S,
    )
    try:
        assert store.index.requested == "DISKANN"
        assert store.index.in_use == "HNSW"  # probed when the congruence store was created
        health = await store.health()
        assert health["reachable"] and health["loaded"]
        assert health["index_type"] == "HNSW" and health["index_fallback_reason"]
        assert (await store.stats())["index"]["in_use"] == "HNSW"
    finally:
        await store.close()


async def test_milvus_lite_is_flat_whatever_the_setting_and_an_older_graph_goes(tmp_path, caplog):
    """On Lite the owner searches its vectors in memory: the collection gets a FLAT index (nothing
    to build) whatever `warm.index_type` says, and an older file's HNSW index is replaced."""
    store = await MilvusStore.open(WarmConfig(index_type="DISKANN"), tmp_path)
    try:
        assert store.index == IndexChoice("FLAT", "FLAT")
        assert "not the configured" not in caplog.text
        health = await store.health()
        assert health["reachable"] and health["loaded"] and health["index_type"] == "FLAT"
    finally:
        await store.close()
    client = MilvusClient(str(lite_file(tmp_path)))
    try:  # as an earlier Akasha left it: a HNSW index
        client.release_collection(COLLECTION)
        client.drop_index(COLLECTION, "embedding")
        client.create_index(COLLECTION, index_params("HNSW"), sync=False)
        assert client.describe_index(COLLECTION, "embedding")["index_type"] == "HNSW"
    finally:
        client.close()
    reopened = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        assert reopened.index == IndexChoice("FLAT", "FLAT")
        assert (await reopened.health())["index_type"] == "FLAT"
    finally:
        await reopened.close()


@pytest.mark.parametrize("backend", ["milvus-lite", "milvus-server"])
async def test_every_row_is_read_back_by_windows_of_time_then_key(
    backend, data, request, tmp_path, monkeypatch
):
    """The warm indexes are read from the collection in windows (milvus_windows.py); with a
    window of 64 rows and 200 rows created in one microsecond, the reader must split by time,
    then by key, and still read every row once."""
    monkeypatch.setattr(milvus_windows, "WINDOW", 64)
    times = data.batch.column("created_at").to_pylist()
    times[:200] = [times[0]] * 200
    batch = data.batch.slice(0, 300).set_column(
        data.batch.schema.get_field_index("created_at"),
        "created_at",
        pa.array(times[:300], data.batch.schema.field("created_at").type),
    )
    expected = sorted(data.keys[:300].tolist())
    uri = request.getfixturevalue("milvus").uri if backend == "milvus-server" else None
    config = WarmConfig(uri=uri)
    collection = f"windows_{uuid.uuid4().hex[:8]}"
    store = await MilvusStore.open(config, tmp_path, collection=collection)
    try:
        if store._vectors_built is not None:  # its flush must not run beside the reads below,
            await store._vectors_built  # which, unlike the store's own, hold no write lock
        await store.insert(batch)
        low, high = await store._time_bounds()
        read = [
            row["key"]
            async for rows in rows_by_time(store._client, collection, ["key"], low, high)
            for row in rows
        ]
        assert sorted(read) == expected
        # The keyword index is read the same way (through queries on the server)
        found = await store.search_keywords("memory 150", 1)
        assert [key_of(hit) for hit in found] == [data.keys[150]]
        if backend == "milvus-server":
            await store._client.drop_collection(collection)
    finally:
        await store.close()
    if backend == "milvus-lite":  # the owner's vectors, read back the same way on reopening
        reopened = await MilvusStore.open(config, tmp_path, collection=collection)
        try:
            index = await reopened._vector_index()
            assert len(index) == 300 and all(key in index for key in expected)
            hits = await reopened.search(data.vectors[150], 1)
            assert [key_of(hit) for hit in hits] == [data.keys[150]]
        finally:
            await reopened.close()


async def test_lite_rows_read_from_its_memory_are_the_rows_queries_read(data, tmp_path):
    """lite_rows.py reads Lite's private structures: the rows must be what Lite's own queries
    give, after deletes, keys deleted and inserted again, and rows only in the memtable."""
    store = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        await store.insert(data.batch.slice(0, 600))
        await store.flush()
        await store.delete_many(data.keys[:50].tolist())
        await store.insert(data.batch.slice(0, 20))  # 20 of the deleted keys come back
        await store.flush()
        await store.insert(data.batch.slice(600, 100))  # these stay in the memtable
        await store.delete_many(data.keys[600:610].tolist())
        expected = set(data.keys[:700]) - set(data.keys[20:50]) - set(data.keys[600:610])
        fields = ["key", "system_id", "created_at", "embedding"]
        async with store._write_lock:
            await store.flush_locked(force=True)
            fast = await asyncio.to_thread(live_rows, lite_file(tmp_path), store.collection, fields)
            queried = pa.concat_tables(  # no Lite path given: through queries, by time windows
                [
                    t
                    async for t in every_row(
                        store._client, store.collection, fields, None, store._time_bounds
                    )
                ]
            )
        assert fast is not None and set(fast.column("key").to_pylist()) == expected
        assert fast.num_rows == queried.num_rows == len(expected)
        fast, queried = (t.sort_by("key") for t in (fast, queried))
        assert fast.column("key").equals(queried.column("key"))
        assert fast.column("system_id").equals(queried.column("system_id"))
        assert np.array_equal(time_us_of(fast), time_us_of(queried))
        assert np.array_equal(vectors_of(fast), vectors_of(queried))
        index = await store._vector_index()  # kept in step since the store opened
        assert len(index) == len(expected) and all(key in index for key in expected)
    finally:
        await store.close()


async def test_a_write_failing_part_way_has_the_indexes_read_again(data, tmp_path, monkeypatch):
    """Lite applied the insert, then the call failed: the owner cannot know what Milvus holds,
    so its in-memory vectors and keywords are read again, and find the row; a resend is a no-op."""
    store = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        await store.insert(data.batch.slice(0, 100))
        await store.search_keywords("memory", 1)  # the keyword index is built
        send = store._send_insert

        async def send_then_fail(request):
            await send(request)
            raise MilvusException(message="the connection dropped after the insert was applied")

        monkeypatch.setattr(store, "_send_insert", send_then_fail)
        with pytest.raises(Unavailable):
            await store.insert(data.batch.slice(100, 50))
        monkeypatch.setattr(store, "_send_insert", send)
        assert store.vectors.index is None and store.keywords.index is None
        assert [key_of(h) for h in await store.search(data.vectors[120], 1)] == [data.keys[120]]
        found = await store.search_keywords("memory 120", 1)
        assert [key_of(h) for h in found] == [data.keys[120]]
        assert await store.insert(data.batch.slice(100, 50)) == []
    finally:
        await store.close()


async def test_milvus_search_many_and_concurrent_searches_agree(data, tmp_path):
    store = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        await store.insert(data.batch.slice(0, 400))
        queries = data.queries[:16]
        batched = await store.search_many(queries, 5, ["sys-1", "sys-2"])
        systems = ["sys-1", "sys-2"]
        concurrent = await asyncio.gather(*(store.search(q, 5, systems) for q in queries))
        one_by_one = [await store.search(q, 5, systems) for q in queries]
        ids = [[[h["id"] for h in hits] for hits in answer] for answer in (batched, concurrent)]
        assert ids[0] == ids[1] == [[h["id"] for h in hits] for hits in one_by_one]
        assert await store.search_many(queries, 5, []) == [[] for _ in queries]
    finally:
        await store.close()


def _state(path: str) -> object:
    """A file's inode, size and mtime; a folder's names (but `indexes`: see `unsynced`)."""
    if os.path.isdir(path):
        return sorted(name for name in os.listdir(path) if name != "indexes")
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns


class SyncLog:
    """Every fsync this process makes (Lite runs in it), with the file's state at that moment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: dict[str, object] = {}
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            with contextlib.suppress(FileNotFoundError):
                state = _state(path)  # before: a change during the fsync shows as unsynced
                real_fsync(fd)
                self.synced[path] = state

        monkeypatch.setattr(os, "fsync", recording_fsync)

    def unsynced(self, folder: Path) -> list[str]:
        """What under `folder` a power cut could lose: files and folders not fsynced in their
        present state. Index files and folders are left out (Lite builds them in a background
        thread, and rebuilds a missing index from the data)."""
        behind = []
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in [*dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                if "/indexes" in path:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if self.synced.get(path) != _state(path):
                        behind.append(path)
        return sorted(behind)


async def test_milvus_lite_make_durable_syncs_what_lite_wrote(data, tmp_path, monkeypatch):
    """Lite writes its WAL and its flushed Parquet files without fsync: after `make_durable`
    (and after a flush, which moves rows out of the WAL) every such file is synced as it is."""
    log = SyncLog(monkeypatch)
    warm = tmp_path / "warm"
    store = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        await store.make_durable()
        await store.insert(data.batch.slice(0, 300))
        wal = [p for p in log.unsynced(warm) if "/wal/wal_data_" in p]
        assert wal, "the insert's WAL file was expected to be unsynced until make_durable"
        await store.make_durable()
        assert log.unsynced(warm) == []
        await store.flush()  # rows go to Parquet files
        assert any(p.endswith(".parquet") for p in log.synced), sorted(log.synced)
        assert log.unsynced(warm) == []
        assert sorted(await store.delete_many(data.keys[:5].tolist())) == sorted(data.keys[:5])
        await store.insert(data.batch.slice(300, 100))
        await store.make_durable()
        assert log.unsynced(warm) == []
    finally:
        await store.close()
    assert log.unsynced(warm) == []  # close flushes, and syncs that flush


async def test_milvus_lite_flush_inside_an_insert_is_synced_at_once(data, tmp_path, monkeypatch):
    """Lite flushes by itself inside an insert once its memtable is full, then deletes the WAL
    that held rows already made durable: the insert syncs the files they moved to."""
    from milvus_lite.engine import collection

    log = SyncLog(monkeypatch)
    store = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        await store._vectors_built  # its flush, if it came after the insert, would be a second
        await store.insert(data.batch.slice(0, 50))
        await store.make_durable()
        monkeypatch.setattr(collection, "MEMTABLE_MEMORY_LIMIT", 1)  # flush on the next write
        await store.insert(data.batch.slice(50, 50))
        assert any(p.endswith(".parquet") for p in log.synced), "no flush happened"
        assert log.unsynced(tmp_path / "warm") == []
        assert len(await store.existing(data.keys[:100].tolist())) == 100
    finally:
        await store.close()


async def test_make_durable_elsewhere_has_nothing_left_to_do(milvus, data, tmp_path):
    """A server acknowledges an insert once it is in its log (see milvus_store.py); the cold
    archive's writes are durable when they return (objects/local.py, S3)."""
    server = await MilvusStore.open(
        WarmConfig(uri=milvus.uri, index_type="HNSW"), tmp_path, collection="durable_probe"
    )
    cold = ColdStore(open_object_store(ObjectsConfig(), tmp_path))
    try:
        for store in (server, cold):
            assert await store.insert(data.batch.slice(0, 5)) == data.keys[:5].tolist()
            await store.make_durable()
            assert len(await store.existing(data.keys[:5].tolist())) == 5
    finally:
        await server.close()
        await cold.close()


async def test_an_earlier_collection_is_never_read_as_the_keyed_one(data, tmp_path, caplog):
    """A data dir from before keys: its `akasha_memories` stays as it is, unread, and says so."""
    old = await MilvusStore.open(WarmConfig(), tmp_path, collection="akasha_memories")
    await old.insert(data.batch.slice(0, 3))
    await old.close()
    store = await MilvusStore.open(WarmConfig(), tmp_path)
    try:
        assert store.collection == "memories_v2"
        assert "'akasha_memories' of an earlier Akasha" in caplog.text
        assert await store.existing(data.keys[:3].tolist()) == {}
    finally:
        await store.close()


async def test_milvus_unreachable_is_unavailable_and_unhealthy(tmp_path):
    with pytest.raises(Unavailable):
        await MilvusStore.open(WarmConfig(uri="http://127.0.0.1:9"), tmp_path)
    dead = MilvusStore(
        AsyncMilvusClient(uri="http://127.0.0.1:9"),
        "memories_v2",
        IndexChoice("HNSW", "HNSW"),
        lite_path=None,
        where="nowhere",
    )
    health = await dead.health()
    assert health["reachable"] is False and health["loaded"] is False and health["error"]
    with pytest.raises(Unavailable):
        await dead.search(np.ones(384, np.float32), 3)


# -- cold tier on S3 specifics ---------------------------------------------------------------------


async def test_cold_s3_objects_seam(s3):
    """The objects seam against the real S3 server: what local.py's unit tests check."""
    store = s3_store(s3, "seam")
    await store.put("a/b/one.bin", b"1" * 1000)
    await store.put("a/b/one.bin", b"2")  # replaced whole
    await store.put("a/c.bin", b"3")
    assert await store.get("a/b/one.bin") == b"2"
    assert [(i.key, i.size) for i in await store.list_objects("a/")] == [
        ("a/b/one.bin", 1),
        ("a/c.bin", 1),
    ]
    assert [i.key for i in await store.list_objects("a/b")] == ["a/b/one.bin"]
    assert await store.exists("a/c.bin") and not await store.exists("a/nope")
    await store.delete("a/c.bin")
    await store.delete("a/c.bin")
    from akasha_ray.errors import NotFound

    with pytest.raises(NotFound):
        await store.get("a/c.bin")
    for n in range(1005):  # more than one listing page
        await store.put(f"many/{n:05d}", b"")
    assert len(await store.list_objects("many/")) == 1005
    await store.close()


async def test_cold_s3_missing_bucket_is_a_config_error(s3):
    from akasha_ray.errors import ConfigError

    store = S3ObjectStore.from_url(
        "s3://no-such-bucket/x",
        endpoint_url=s3.endpoint_url,
        region_name=seaweedfs.REGION,
        aws_access_key_id=seaweedfs.ACCESS_KEY,
        aws_secret_access_key=seaweedfs.SECRET_KEY,
    )
    with pytest.raises(ConfigError):
        await store.put("k", b"v")
    await store.close()


async def test_cold_factory_opens_s3_from_settings(s3, tmp_path, monkeypatch, data):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", seaweedfs.REGION)
    config = ObjectsConfig(
        backend="s3", url=f"s3://{s3.bucket}/factory", endpoint_url=s3.endpoint_url
    )
    store = ColdStore.open(config, tmp_path)
    try:
        assert await store.insert(data.batch.slice(0, 20)) == data.keys[:20].tolist()
        assert (await store.get(data.keys[3]))["content"] == data.batch.column("content")[3].as_py()
        keys = [i.key for i in await store.objects.list_objects("cold/")]
        assert any(k.startswith("cold/day=2026-06-01/system=sys-0/") for k in keys)
    finally:
        await store.close()
