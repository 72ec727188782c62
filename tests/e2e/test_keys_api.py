"""The key lifecycle over real HTTP: ids, listing, expiry, revocation (within 5 s on every
ingress replica), and the CLI's `keys list` / `keys revoke`."""

import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from akasha_ray.auth import hash_key

pytestmark = pytest.mark.e2e

REVOKED_WITHIN_S = 5  # the bound the README promises; replicas check every second


def _http(akasha, key=None, prefix=""):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=akasha["url"] + prefix, headers=headers, timeout=60)


def _create(akasha, **body):
    body = {"system_ids": ["keys-bot"], "scopes": ["read"], **body}
    with _http(akasha, akasha["admin_key"]) as http:
        response = http.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _probe(http):
    """A request that touches no store: 403 for a valid scoped key, 401 for a dead one."""
    return http.get("/v1/keys").status_code


def _poll_until_refused(http, deadline_s=30):
    """Probe until the key is refused; the monotonic time of the first refusal."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        status = _probe(http)
        if status == 401:
            return time.monotonic()
        assert status == 403, status
        time.sleep(0.05)
    raise AssertionError(f"still accepted after {deadline_s} s")


def test_create_list_and_revoke(akasha, admin):
    expires_at = datetime.now(UTC) + timedelta(days=30)
    systems = ["keys-bot", "other-bot"]
    created = _create(akasha, system_ids=systems, expires_at=expires_at.isoformat())
    assert created["key"].startswith("ak_") and created["key_id"].startswith("kid_")
    assert created["system_ids"] == ["keys-bot", "other-bot"] and created["scopes"] == ["read"]
    assert datetime.fromisoformat(created["expires_at"]) == expires_at

    with _http(akasha, akasha["admin_key"]) as http:
        response = http.get("/v1/keys")
    assert response.status_code == 200
    # Neither a key nor a hash is ever answered.
    assert created["key"] not in response.text and hash_key(created["key"]) not in response.text
    assert hash_key(akasha["admin_key"]) not in response.text
    listed = {k["key_id"]: k for k in response.json()["keys"]}
    mine = listed[created["key_id"]]
    assert mine == {
        "key_id": created["key_id"],
        "system_ids": ["keys-bot", "other-bot"],
        "scopes": ["read"],
        "created_at": created["created_at"],
        "expires_at": created["expires_at"],
        "expired": False,
        "revoked": False,
        "revoked_at": None,
    }
    assert any(k["scopes"] == ["admin"] and not k["revoked"] for k in listed.values())

    with _http(akasha, created["key"]) as http:
        assert _probe(http) == 403  # valid, but not the admin
        admin.revoke_key(created["key_id"])
        _poll_until_refused(http)
        assert http.post("/v1/search", json={"query": "x"}).status_code == 401
    mine = {k["key_id"]: k for k in admin.list_keys()}[created["key_id"]]
    assert mine["revoked"] and mine["revoked_at"] is not None
    admin.revoke_key(created["key_id"])  # again: still 204


def test_key_route_errors(akasha):
    scoped = _create(akasha)
    with _http(akasha, akasha["admin_key"]) as http:
        assert http.delete("/v1/keys/kid_0000000000000000").status_code == 404
        response = http.delete("/v1/keys/not-a-key-id")
        assert response.status_code == 422
        assert ["path", "key_id"] in [e["loc"] for e in response.json()["detail"]]
        # The only admin key cannot revoke itself: no one could manage keys afterwards.
        admins = [k for k in http.get("/v1/keys").json()["keys"] if k["scopes"] == ["admin"]]
        live = [k["key_id"] for k in admins if not k["revoked"]]
        assert len(live) == 1
        response = http.delete(f"/v1/keys/{live[0]}")
        assert response.status_code == 409, response.text
        assert _probe(http) == 200
    with _http(akasha, scoped["key"]) as http:
        assert http.get("/v1/keys").status_code == 403
        assert http.delete(f"/v1/keys/{scoped['key_id']}").status_code == 403
    with _http(akasha) as http:
        assert http.get("/v1/keys").status_code == 401
        assert http.delete(f"/v1/keys/{scoped['key_id']}").status_code == 401


@pytest.mark.parametrize(
    "expires_at",
    [
        "2020-01-01T00:00:00Z",  # past
        "2099-01-01T00:00:00",  # no offset
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "soon",
    ],
)
def test_bad_expiry_is_a_422_naming_the_field(akasha, expires_at):
    body = {"system_ids": ["keys-bot"], "scopes": ["read"], "expires_at": expires_at}
    with _http(akasha, akasha["admin_key"]) as http:
        response = http.post("/v1/keys", json=body)
    assert response.status_code == 422, response.text
    assert ["body", "expires_at"] in [e["loc"] for e in response.json()["detail"]]


def test_an_expired_key_is_refused(akasha, admin):
    expires_at = datetime.now(UTC) + timedelta(seconds=4)
    created = _create(akasha, expires_at=expires_at.isoformat())
    with _http(akasha, created["key"]) as http:
        _poll_until_refused(http)
        refused_at = datetime.now(UTC)
        assert http.post("/v1/search", json={"query": "x"}).status_code == 401
    assert refused_at >= expires_at
    assert {k["key_id"]: k for k in admin.list_keys()}[created["key_id"]]["expired"]


@pytest.fixture
def two_replicas(akasha, monkeypatch):
    """A second copy of the API with two ingress replicas, on the same actors as `akasha`."""
    from ray import serve

    from akasha_ray import config
    from serve_apps.api import AkashaAPI

    for name, value in akasha["env"].items():
        if name.startswith("AKASHA_"):
            monkeypatch.setenv(name, value)
    settings = config.load()
    embedder = serve.get_deployment_handle("embedder", app_name="akasha")
    app = AkashaAPI.options(num_replicas=2, ray_actor_options={"num_cpus": 0}).bind(
        embedder, config.to_dict(settings)
    )
    serve.run(app, name="keys-replicas", route_prefix="/keys-replicas")
    yield "/keys-replicas"
    serve.delete("keys-replicas")


def test_a_revoked_key_is_refused_by_every_replica_within_5_s(akasha, admin, two_replicas):
    created = _create(akasha)
    with _http(akasha, created["key"], prefix=two_replicas) as http:
        # Both replicas verify and cache the key (requests spread over them).
        assert [_probe(http) for _ in range(20)] == [403] * 20
        revoked_at = time.monotonic()
        admin.revoke_key(created["key_id"])
        first_refusal_s = _poll_until_refused(http) - revoked_at
        print(f"first 401 after {first_refusal_s:.2f} s")
        assert first_refusal_s < REVOKED_WITHIN_S
        # From the bound on, every replica refuses it: no request at all gets through.
        time.sleep(max(0.0, revoked_at + REVOKED_WITHIN_S - time.monotonic()))
        assert [_probe(http) for _ in range(20)] == [401] * 20


def _akasha(akasha, *args):
    return subprocess.run(
        [akasha["akasha_bin"], *args],
        env=akasha["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _listed_ids(done):
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["KEY_ID", "STATE", "SCOPES"]
    return {line.split()[0]: line.split()[1] for line in lines[1:]}


def test_cli_keys_list_and_revoke(akasha):
    before = _listed_ids(_akasha(akasha, "keys", "list"))
    done = _akasha(akasha, "keys", "create", "--system", "cli-keys-bot", "--scope", "read")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    listing = _akasha(akasha, "keys", "list")
    assert key not in listing.stdout and hash_key(key) not in listing.stdout
    after = _listed_ids(listing)
    [key_id] = set(after) - set(before)
    assert after[key_id] == "active"

    done = _akasha(akasha, "keys", "revoke", key_id)
    assert done.returncode == 0 and done.stdout.strip() == f"revoked {key_id}", done.stderr
    assert _listed_ids(_akasha(akasha, "keys", "list"))[key_id] == "revoked"
    with _http(akasha, key) as http:
        _poll_until_refused(http)
    done = _akasha(akasha, "keys", "revoke", "kid_0000000000000000")
    assert done.returncode == 1 and "404" in done.stderr
