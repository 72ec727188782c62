import json
import stat

import pytest

from akasha_ray.auth import KeyStore, Principal, hash_key, read_admin_key
from akasha_ray.errors import Forbidden


def test_admin_key_generated_once_and_stored_hashed(tmp_path):
    store = KeyStore(tmp_path)
    key = store.ensure_admin(None)
    assert key and key.startswith("ak_")
    assert store.ensure_admin(None) is None  # printed once, never again
    assert KeyStore(tmp_path).ensure_admin(None) is None
    assert read_admin_key(tmp_path) == key
    assert stat.S_IMODE((tmp_path / "admin.key").stat().st_mode) == 0o600
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and hash_key(key) in text
    assert KeyStore(tmp_path).principal(hash_key(key))["admin"] is True


def test_configured_admin_key_replaces_the_previous_configured_one(tmp_path):
    store = KeyStore(tmp_path)
    assert store.ensure_admin("first-admin-key") is None
    assert store.principal(hash_key("first-admin-key"))["admin"]
    store.ensure_admin("second-admin-key")
    assert store.principal(hash_key("first-admin-key")) is None
    assert store.principal(hash_key("second-admin-key"))["admin"]
    assert not (tmp_path / "admin.key").exists()


def test_scoped_keys(tmp_path):
    store = KeyStore(tmp_path)
    key = store.create(["b", "a", "a"], ["read"])
    principal = Principal.from_dict(KeyStore(tmp_path).principal(hash_key(key)))
    assert principal == Principal(admin=False, system_ids=frozenset({"a", "b"}), scopes={"read"})
    principal.require("read")
    with pytest.raises(Forbidden):
        principal.require("write")
    with pytest.raises(Forbidden) as caught:
        principal.require_systems(["a", "c"], "system_ids")
    assert caught.value.field == "system_ids" and "'c'" in caught.value.message
    with pytest.raises(Forbidden):
        principal.require_admin()
    assert principal.may_see("a") and not principal.may_see("c")
    assert json.loads((tmp_path / "keys.json").read_text())  # valid JSON after atomic replace
    assert store.principal(hash_key("guess")) is None
