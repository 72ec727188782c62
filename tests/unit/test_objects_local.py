"""The local-folder objects backend: atomic replace, listing by prefix, key rules, the factory."""

from __future__ import annotations

import os

import pytest

from akasha_ray.config import ObjectsConfig
from akasha_ray.errors import ConfigError, InvalidInput, NotFound
from akasha_ray.objects import ObjectStore, open_object_store
from akasha_ray.objects.local import LocalObjectStore


@pytest.fixture
def store(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


async def test_put_get_replace_delete(store):
    assert isinstance(store, ObjectStore)
    await store.put("a/b/c.bin", b"first")
    await store.put("a/b/c.bin", b"second")
    assert await store.get("a/b/c.bin") == b"second"
    assert await store.exists("a/b/c.bin")
    await store.delete("a/b/c.bin")
    await store.delete("a/b/c.bin")  # deleting a missing key is fine
    assert not await store.exists("a/b/c.bin")
    with pytest.raises(NotFound):
        await store.get("a/b/c.bin")
    with pytest.raises(NotFound):
        await store.get("a/b")  # a folder is not an object


async def test_list_by_prefix_sorted_with_sizes(store):
    for key in ["x/2", "x/1", "x/y/3", "xz/4", "top"]:
        await store.put(key, key.encode())
    assert [(i.key, i.size) for i in await store.list_objects("x/")] == [
        ("x/1", 3),
        ("x/2", 3),
        ("x/y/3", 5),
    ]
    assert [i.key for i in await store.list_objects("x")] == ["x/1", "x/2", "x/y/3", "xz/4"]
    assert [i.key for i in await store.list_objects()] == ["top", "x/1", "x/2", "x/y/3", "xz/4"]
    assert await store.list_objects("nothing/") == []


async def test_writes_are_atomic_and_leave_no_temporary_files(store, monkeypatch):
    await store.put("k/v", b"old")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        await store.put("k/v", b"new")
    monkeypatch.undo()
    assert await store.get("k/v") == b"old"  # the failed write left the old object whole
    assert sorted(p.name for p in (store.root / "k").iterdir()) == ["v"]
    assert [i.key for i in await store.list_objects()] == ["k/v"]


async def test_temporary_files_are_never_listed(store):
    await store.put("d/real", b"1")
    (store.root / "d" / ".real.tmp-abc").write_bytes(b"partial")
    assert [i.key for i in await store.list_objects("d/")] == ["d/real"]


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/../b", "..", "a/./b", "a\\b", "a/.hidden", "nul\x00", "a/"]
)
async def test_keys_that_could_escape_the_folder_are_refused(store, key):
    with pytest.raises(InvalidInput):
        await store.put(key, b"x")
    with pytest.raises(InvalidInput):
        await store.get(key)


@pytest.mark.parametrize("prefix", ["/", "../", "a/../", "a//"])
async def test_bad_prefixes_are_refused(store, prefix):
    with pytest.raises(InvalidInput):
        await store.list_objects(prefix)


def test_factory(tmp_path):
    local = open_object_store(ObjectsConfig(), tmp_path)
    assert isinstance(local, LocalObjectStore) and local.root == tmp_path / "objects"
    with pytest.raises(ConfigError, match=r"objects\.url"):
        open_object_store(ObjectsConfig(backend="s3"), tmp_path)
    with pytest.raises(ConfigError, match="s3://"):
        open_object_store(ObjectsConfig(backend="s3", url="http://bucket/x"), tmp_path)


async def test_put_and_delete_sync_the_file_and_every_folder_they_change(store, monkeypatch):
    """Durable on return: the file, its folder (the rename) and the parent of each folder the
    put created (their names) are fsynced; a delete fsyncs the folder it removed a name from."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    root = store.root
    await store.put("a/b/c.bin", b"data")
    assert set(synced) >= {str(root / "a" / "b"), str(root / "a"), str(root), str(root.parent)}
    assert any(path.startswith(str(root / "a" / "b" / ".c.bin.tmp-")) for path in synced)
    synced.clear()
    await store.put("a/b/d.bin", b"more")  # no new folder: only the file and its folder
    assert [p for p in synced if not p.startswith(f"{root / 'a' / 'b'}/.")] == [
        str(root / "a" / "b")
    ]
    synced.clear()
    await store.delete("a/b/c.bin")
    assert synced == [str(root / "a" / "b")]
    synced.clear()
    await store.delete("a/b/c.bin")  # nothing removed: nothing to sync
    assert synced == []
