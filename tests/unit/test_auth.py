import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.auth import (
    KeyStore,
    Principal,
    PrincipalCache,
    hash_key,
    read_admin_key,
)
from akasha_ray.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound

STORED_FIELDS = {
    "key_id",
    "hash",
    "system_ids",
    "scopes",
    "created_at",
    "expires_at",
    "revoked_at",
}


def _records(data_dir):
    """What the files hold: keys.json, then the journal's records over it."""
    records = {r["key_id"]: r for r in json.loads((data_dir / "keys.json").read_text())["keys"]}
    journal = data_dir / "keys.journal"
    for line in journal.read_text().splitlines() if journal.exists() else []:
        record = json.loads(line)
        records[record["key_id"]] = record
    return list(records.values())


def _mode(path):
    return stat.S_IMODE(path.lstat().st_mode)


def test_admin_key_generated_once_and_stored_hashed(tmp_path):
    store = KeyStore(tmp_path)
    key = store.ensure_admin(None)
    assert key and key.startswith("ak_")
    assert store.ensure_admin(None) is None  # printed once, never again
    assert KeyStore(tmp_path).ensure_admin(None) is None
    assert read_admin_key(tmp_path) == key
    assert _mode(tmp_path / "admin.key") == 0o600
    assert _mode(tmp_path / "keys.json") == 0o600
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and hash_key(key) in text
    [record] = _records(tmp_path)
    assert set(record) == STORED_FIELDS and record["scopes"] == ["admin"]
    assert KeyStore(tmp_path).principal(hash_key(key))["admin"] is True
    # No temp file is left next to the key files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.key", "keys.journal", "keys.json"]
    assert _mode(tmp_path / "keys.journal") == 0o600


def test_configured_admin_key_revokes_the_generated_one(tmp_path):
    generated = KeyStore(tmp_path).ensure_admin(None)
    store = KeyStore(tmp_path)  # a restart, now with AKASHA_ADMIN_KEY set
    assert store.ensure_admin("configured-admin-key") is None
    assert store.principal(hash_key(generated)) is None
    assert store.principal(hash_key("configured-admin-key"))["admin"]
    assert not (tmp_path / "admin.key").exists()  # the file of a dead key is gone
    listed = {k["key_id"]: k for k in KeyStore(tmp_path).list_keys()}
    assert sorted(k["revoked"] for k in listed.values()) == [False, True]
    # Unsetting AKASHA_ADMIN_KEY later keeps the configured key; nothing new is generated.
    assert KeyStore(tmp_path).ensure_admin(None) is None


def test_configured_admin_key_replaces_the_previous_configured_one(tmp_path):
    store = KeyStore(tmp_path)
    assert store.ensure_admin("first-admin-key") is None
    assert store.principal(hash_key("first-admin-key"))["admin"]
    store.ensure_admin("second-admin-key")
    assert store.principal(hash_key("first-admin-key")) is None
    assert store.principal(hash_key("second-admin-key"))["admin"]
    assert not (tmp_path / "admin.key").exists()
    # A revoked key stays revoked, even when the configuration names it again.
    with pytest.raises(ConfigError, match="revoked"):
        KeyStore(tmp_path).ensure_admin("first-admin-key")
    scoped = store.create(["a"], ["read"])["key"]
    with pytest.raises(ConfigError, match="scoped"):
        store.ensure_admin(scoped)


def test_scoped_keys(tmp_path):
    store = KeyStore(tmp_path)
    created = store.create(["b", "a", "a"], ["read"])
    key, key_id = created["key"], created["key_id"]
    assert key.startswith("ak_") and key_id.startswith("kid_") and key_id not in key
    assert created["system_ids"] == ["a", "b"] and created["expires_at"] is None
    principal = Principal.from_dict(KeyStore(tmp_path).principal(hash_key(key)))
    assert principal == Principal(
        admin=False, system_ids=frozenset({"a", "b"}), scopes={"read"}, key_id=key_id
    )
    principal.require("read")
    with pytest.raises(Forbidden):
        principal.require("write")
    with pytest.raises(Forbidden) as caught:
        principal.require_systems(["a", "c"], "system_ids")
    assert caught.value.field == "system_ids" and "'c'" in caught.value.message
    with pytest.raises(Forbidden):
        principal.require_admin()
    assert principal.may_see("a") and not principal.may_see("c")
    [record] = _records(tmp_path)
    assert set(record) == STORED_FIELDS and key not in json.dumps(record)
    assert store.principal(hash_key("guess")) is None


def test_listing_shows_every_key_but_no_secret(tmp_path):
    store = KeyStore(tmp_path)
    admin = store.ensure_admin(None)
    first = store.create(["a"], ["read"])
    second = store.create(["b"], ["read", "write"])
    store.revoke(first["key_id"])
    listed = KeyStore(tmp_path).list_keys()
    assert [k["scopes"] for k in listed] == [["admin"], ["read"], ["read", "write"]]
    assert [k["revoked"] for k in listed] == [False, True, False]
    assert listed[1]["revoked_at"] is not None and listed[2]["revoked_at"] is None
    text = json.dumps(listed)
    for secret in (admin, first["key"], second["key"]):
        assert secret not in text and hash_key(secret) not in text


def test_expiry(tmp_path):
    store = KeyStore(tmp_path)
    now = datetime.now(UTC)
    with pytest.raises(InvalidInput) as caught:
        store.create(["a"], ["read"], expires_at=now - timedelta(seconds=1))
    assert caught.value.field == "expires_at"
    expires_at = now + timedelta(hours=1)
    created = store.create(["a"], ["read"], expires_at=expires_at)
    assert datetime.fromisoformat(created["expires_at"]) == expires_at
    key_hash = hash_key(created["key"])
    found = store.principal(key_hash, now=expires_at - timedelta(seconds=1))
    principal = Principal.from_dict(found)
    assert principal.expires_at == expires_at
    assert not principal.expired(expires_at - timedelta(seconds=1))
    assert principal.expired(expires_at)  # the ingress checks this on every request
    assert store.principal(key_hash, now=expires_at) is None
    assert KeyStore(tmp_path).principal(key_hash, now=expires_at + timedelta(days=1)) is None


def test_revoke(tmp_path):
    store = KeyStore(tmp_path)
    admin = store.ensure_admin(None)
    created = store.create(["a"], ["read", "write"])
    key_hash = hash_key(created["key"])
    version = store.version
    store.revoke(created["key_id"])
    assert store.version != version
    assert store.principal(key_hash) is None
    assert KeyStore(tmp_path).principal(key_hash) is None  # revoked on disk too
    store.revoke(created["key_id"])  # again: nothing changes, no error
    with pytest.raises(NotFound) as caught:
        store.revoke("kid_0000000000000000")
    assert caught.value.field == "key_id"
    # The only admin key cannot be revoked: that would lock everyone out.
    [admin_id] = [k["key_id"] for k in store.list_keys() if k["scopes"] == ["admin"]]
    with pytest.raises(Conflict):
        store.revoke(admin_id)
    assert store.principal(hash_key(admin))["admin"]


def test_version_moves_on_every_change_and_on_restart(tmp_path):
    store = KeyStore(tmp_path)
    seen = {store.version}
    store.ensure_admin(None)
    seen.add(store.version)
    store.create(["a"], ["read"])
    seen.add(store.version)
    seen.add(KeyStore(tmp_path).version)  # a restarted actor starts from another version
    assert len(seen) == 4
    version = store.version
    store.ensure_admin(None)  # no change, no new version
    assert store.version == version


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _replica_lookup(cache: PrincipalCache, store: KeyStore, key: str) -> Principal | None:
    """What an ingress replica does per request (serve_apps/api.py `_principal`), minus Ray."""
    key_hash = hash_key(key)
    if cache.check_due():
        cache.observe(store.version)
    principal = cache.get(key_hash)
    if principal is None:
        found = store.principal(key_hash)
        if found is None:
            return None
        principal = Principal.from_dict(found)
        cache.put(key_hash, principal, store.version)
    return principal


def test_every_replica_drops_a_revoked_key_within_one_check(tmp_path):
    store = KeyStore(tmp_path)
    created = store.create(["a"], ["read"])
    clock = FakeClock()
    replicas = [PrincipalCache(check_every_s=1.0, clock=clock) for _ in range(3)]
    for cache in replicas:
        assert _replica_lookup(cache, store, created["key"]) is not None
    store.revoke(created["key_id"])
    clock.now = 0.5  # no check due yet: the cached answer may stand for less than a second
    assert all(_replica_lookup(c, store, created["key"]) for c in replicas)
    clock.now = 1.0
    assert all(_replica_lookup(c, store, created["key"]) is None for c in replicas)


def test_a_lookup_that_raced_a_revocation_is_not_kept(tmp_path):
    store = KeyStore(tmp_path)
    created = store.create(["a"], ["read"])
    key_hash = hash_key(created["key"])
    clock = FakeClock()
    cache = PrincipalCache(check_every_s=1.0, clock=clock)
    assert cache.check_due() and not cache.check_due()  # one check per interval
    cache.observe(store.version)
    # A lookup answered before the revocation arrives after the check that saw it.
    answer, answered_at = store.principal(key_hash), store.version
    store.revoke(created["key_id"])
    clock.now = 1.0
    assert cache.check_due()
    cache.observe(store.version)
    cache.put(key_hash, Principal.from_dict(answer), answered_at)
    assert cache.get(key_hash) is None


def test_key_files_are_not_written_through_symlinks(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (data_dir / "admin.key").symlink_to(target)
    key = KeyStore(data_dir).ensure_admin(None)
    assert target.read_text() == "precious\n"  # the link was replaced, not followed
    admin_file = data_dir / "admin.key"
    assert not admin_file.is_symlink() and _mode(admin_file) == 0o600
    assert read_admin_key(data_dir) == key


def test_key_files_are_not_read_through_symlinks(tmp_path):
    data_dir = tmp_path / "data"
    KeyStore(data_dir).ensure_admin(None)
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"keys": []}))
    os.replace(data_dir / "keys.json", tmp_path / "real.json")
    (data_dir / "keys.json").symlink_to(planted)
    with pytest.raises(ConfigError, match="symbolic link"):
        KeyStore(data_dir)
    os.replace(data_dir / "admin.key", tmp_path / "real.key")
    (data_dir / "admin.key").symlink_to(tmp_path / "real.key")
    with pytest.raises(ConfigError, match="symbolic link"):
        read_admin_key(data_dir)


def test_the_first_file_format_is_upgraded(tmp_path):
    old = {
        hash_key("old-admin"): {
            "admin": True,
            "system_ids": [],
            "scopes": [],
            "source": "generated",
            "created_at": "2026-01-01T00:00:00+00:00",
        },
        hash_key("old-scoped"): {
            "admin": False,
            "system_ids": ["a"],
            "scopes": ["read"],
            "source": "api",
            "created_at": "2026-01-02T00:00:00+00:00",
        },
    }
    (tmp_path / "keys.json").write_text(json.dumps(old))
    store = KeyStore(tmp_path)
    assert store.principal(hash_key("old-admin"))["admin"]
    assert Principal.from_dict(store.principal(hash_key("old-scoped"))).system_ids == {"a"}
    records = _records(tmp_path)
    assert all(set(r) == STORED_FIELDS for r in records)
    assert [r["scopes"] for r in records] == [["admin"], ["read"]]


def test_key_changes_go_to_a_journal_that_is_folded_into_the_file(tmp_path):
    """Each create or revoke appends its record (no rewrite of every key); once the journal is
    longer than the store (and 64 lines), keys.json takes it all. A reload sees every change,
    and a line cut short by a crash (a change that never returned) is skipped."""
    store = KeyStore(tmp_path)
    store.ensure_admin(None)
    ids = [store.create(["a"], ["read"])["key_id"] for _ in range(40)]
    store.revoke(ids[0])
    journal = (tmp_path / "keys.journal").read_text().splitlines()
    assert len(journal) == 41  # 40 creates and a revoke; keys.json still holds the admin alone
    assert len(json.loads((tmp_path / "keys.json").read_text())["keys"]) == 1
    with (tmp_path / "keys.journal").open("a") as out:
        out.write('{"key_id": "kid_0000000000000000", "ha')  # a crash mid-append
    again = KeyStore(tmp_path)
    assert {r["key_id"] for r in again.records()} == {r["key_id"] for r in store.records()}
    assert again.list_keys() == store.list_keys()
    for key_id in ids[1:30]:  # past 64 journaled changes (more than keys): folded
        again.revoke(key_id)
    assert len(json.loads((tmp_path / "keys.json").read_text())["keys"]) == 41
    assert len((tmp_path / "keys.journal").read_text().splitlines()) < 64
    assert {r["key_id"] for r in KeyStore(tmp_path).records()} == {
        r["key_id"] for r in again.records()
    }


def test_the_journal_is_not_read_or_written_through_a_symlink(tmp_path):
    data_dir = tmp_path / "data"
    KeyStore(data_dir).ensure_admin(None)
    planted = tmp_path / "planted"
    planted.write_text("")
    (data_dir / "keys.journal").unlink()
    (data_dir / "keys.journal").symlink_to(planted)
    with pytest.raises(ConfigError, match="symbolic link"):
        KeyStore(data_dir)
