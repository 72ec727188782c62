"""The /v1/dr routes as the API mounts them (its FastAPI app, its error handler), without Ray:
admin only, bad input is a 422 naming the field, promotion with DR off or to another region is
a 409, the status with DR off says so."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from akasha_ray import config
from akasha_ray.errors import Forbidden, Unauthenticated
from serve_apps import api, dr

ADMIN = "Bearer admin-key"


async def require_admin(authorization: str | None) -> None:
    if authorization is None:
        raise Unauthenticated("send Authorization: Bearer <API key>")
    if authorization != ADMIN:
        raise Forbidden("admin only")


@pytest.fixture
def client(tmp_path):
    dr.attach(config.load(data_dir=tmp_path), require_admin)
    with TestClient(api.app) as http:
        yield http


def locs(answer) -> list:
    return [e["loc"] for e in answer.json()["detail"]]


def test_dr_routes_are_admin_only(client):
    assert client.get("/v1/dr/status").status_code == 401
    assert client.get("/v1/dr/status", headers={"Authorization": "Bearer x"}).status_code == 403


def test_status_with_dr_off_says_so(client):
    answer = client.get("/v1/dr/status", headers={"Authorization": ADMIN})
    assert answer.status_code == 200
    assert answer.json() == {"enabled": False, "status": "ok"}


def test_bad_input_is_a_422_naming_the_field(client):
    headers = {"Authorization": ADMIN}
    answer = client.post("/v1/dr/promote", json={"region": "west", "mode": "now"}, headers=headers)
    assert answer.status_code == 422
    assert ["body", "mode"] in locs(answer)
    answer = client.post("/v1/dr/promote", json={"region": "west", "x": 1}, headers=headers)
    assert answer.status_code == 422 and ["body", "x"] in locs(answer)
    answer = client.post(
        "/v1/dr/promote", json={"region": "west", "timeout_s": -1}, headers=headers
    )
    assert answer.status_code == 422
    answer = client.post("/v1/dr/handover", json={}, headers=headers)
    assert answer.status_code == 422 and ["body", "to"] in locs(answer)


def test_promotion_with_dr_off_is_a_conflict(client):
    headers = {"Authorization": ADMIN}
    answer = client.post("/v1/dr/promote", json={"region": "west"}, headers=headers)
    assert answer.status_code == 409 and "DR is off" in answer.json()["message"]


def test_a_promotion_sent_to_another_region_is_a_conflict_naming_the_field(tmp_path):
    settings = config.load(
        data_dir=tmp_path,
        dr={
            "region": "east",
            "regions": [
                {"name": "east", "role": "primary", "bucket": str(tmp_path / "e")},
                {"name": "west", "role": "secondary", "bucket": str(tmp_path / "w")},
            ],
        },
    )
    dr.attach(settings, require_admin)
    with TestClient(api.app) as http:
        answer = http.post(
            "/v1/dr/promote", json={"region": "west"}, headers={"Authorization": ADMIN}
        )
    assert answer.status_code == 409
    assert answer.json()["detail"][0]["loc"] == ["region"]
