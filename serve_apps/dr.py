"""The DR routes (admin only): `GET /v1/dr/status`, `POST /v1/dr/promote`, and the two a
target calls on the old primary during a planned switchover, `POST /v1/dr/handover` and
`POST /v1/dr/resume`.

Mounted by `serve_apps/api.py` (`app.include_router(router)`); the deployment `attach`es its
key check and settings, since these handlers are plain functions (one API replica per process).
The logic is in `akasha_ray/replication/` (status, promotion); this module finds the actors.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from actors.region import CHANGELOG, ActorPort, actor_name
from akasha_ray.config import Settings
from akasha_ray.errors import Conflict, Unavailable
from akasha_ray.memories.peers import find
from akasha_ray.memories.service import call
from akasha_ray.replication import promotion, status
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.witness import Witness

router = APIRouter(prefix="/v1/dr", tags=["dr"])
OLD_PRIMARY_TIMEOUT_S = 5.0  # a status or resume call to the old primary
REJOIN_TIMEOUT_S = 3600.0  # a restore of the whole primary


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field(description="The region to promote: the one this request is sent to.")
    mode: Literal["planned", "forced"] = Field(
        "planned",
        description="planned: the old primary hands over (nothing lost); forced: it is gone, "
        "promote what this region's bucket holds and report the possible loss.",
    )
    timeout_s: float | None = Field(
        None, gt=0, le=3600, description="How long to wait for this region to apply the log."
    )


class HandoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="The region taking over.")
    timeout_s: float = Field(10, gt=0, le=600)


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Attached:
    settings: Settings | None = None
    require_admin: Callable[[str | None], Awaitable[None]] | None = None


_attached = _Attached()


def attach(settings: Settings, require_admin: Callable[[str | None], Awaitable[None]]) -> None:
    """Called by the API deployment's constructor."""
    _attached.settings = settings
    _attached.require_admin = require_admin


async def _admin(authorization: str | None) -> Settings:
    assert _attached.settings is not None and _attached.require_admin is not None
    await _attached.require_admin(authorization)
    return _attached.settings


def _dr_on(settings: Settings) -> None:
    if not settings.dr.enabled:
        raise Conflict("DR is off here (dr.region is not set)")


def _log(settings: Settings) -> ActorPort:
    return ActorPort(CHANGELOG, settings.namespace)


def _coordinator(settings: Settings, region: str) -> Any:
    return find(actor_name(region), settings.namespace)


def _witness(settings: Settings) -> Witness:
    return Witness(Bucket.for_region(settings.dr.witness_region()))


async def dr_status(settings: Settings) -> dict[str, Any]:
    """The status document (also behind /healthz's `replication` component)."""
    if not settings.dr.enabled:
        return await status.gather(settings, _log(settings), {})
    coordinators = {}
    for other in settings.dr.others():
        try:
            coordinators[other.name] = _coordinator(settings, other.name).status.remote()
        except Unavailable as exc:
            coordinators[other.name] = _raise(exc)
    return await status.gather(settings, _log(settings), coordinators)


async def _raise(exc: BaseException) -> None:
    raise exc


async def health(settings: Settings) -> dict[str, Any]:
    return status.health(await dr_status(settings))


Authorization = Header(None, description="Bearer <API key>")


@router.get("/status")
async def get_status(authorization: str | None = Authorization) -> dict[str, Any]:
    """Per region: role, epoch, LSNs logged / shipped / applied per stream, lag in changes and
    seconds, the last error; `status` failing when replication fails anywhere."""
    return await dr_status(await _admin(authorization))


@router.post("/promote")
async def promote(body: PromoteRequest, authorization: str | None = Authorization) -> dict:
    """Make this region the primary (send it to the region being promoted)."""
    settings = await _admin(authorization)
    _dr_on(settings)
    if body.region != settings.dr.region:
        raise Conflict(
            f"this is region {settings.dr.region}: send the promotion of {body.region!r} to "
            "that region's URL",
            field="region",
        )
    state = await _log(settings).state()
    old_name = state["primary"]
    old_config = next((r for r in settings.dr.regions if r.name == old_name), None)
    old = None
    if old_config is not None and old_config.url and old_name != settings.dr.region:
        old = HttpRegion(old_config.url, authorization, settings.dr.sync_timeout_s + 10)
    coordinator = _coordinator(settings, old_name) if old_name != settings.dr.region else None

    async def catch_up(versions, timeout_s):
        if coordinator is None:
            raise Conflict(f"region {settings.dr.region} already is the primary")
        ref = coordinator.caught_up.remote(versions, timeout_s)
        return await call(ref, f"region-{old_name}", timeout_s + 30)

    def follower(name: str) -> Callable[[], Awaitable[Any]]:
        return lambda: call(_coordinator(settings, name).follow_witness.remote(), name, 30)

    followers = [follower(r.name) for r in settings.dr.others()]
    return await promotion.promote(
        settings,
        _log(settings),
        _witness(settings),
        catch_up,
        mode=body.mode,
        old=old,
        followers=followers,
        timeout_s=body.timeout_s,
    )


@router.post("/handover")
async def handover(body: HandoverRequest, authorization: str | None = Authorization) -> dict:
    """On the primary, asked by the region taking over: stop taking writes, ship everything."""
    settings = await _admin(authorization)
    _dr_on(settings)
    return await promotion.handover(
        settings, _log(settings), _witness(settings), body.to, body.timeout_s
    )


@router.post("/resume")
async def resume(body: ResumeRequest, authorization: str | None = Authorization) -> dict:
    """On the old primary after a failed switchover: take writes again (if still primary)."""
    settings = await _admin(authorization)
    _dr_on(settings)
    return await promotion.resume(settings, _log(settings), _witness(settings))


@router.post("/rejoin")
async def rejoin(body: ResumeRequest, authorization: str | None = Authorization) -> dict:
    """On a deposed region restarted on an empty data dir: restore the primary's latest
    snapshot and log, then apply on as its secondary."""
    settings = await _admin(authorization)
    _dr_on(settings)
    seen = await asyncio.to_thread(_witness(settings).read)
    if seen is None or seen.primary == settings.dr.region:
        raise Conflict(f"region {settings.dr.region} is the primary: nothing to rejoin")
    ref = _coordinator(settings, seen.primary).rejoin.remote()
    return await call(ref, f"region-{seen.primary}", REJOIN_TIMEOUT_S)


class HttpRegion:
    """Another region's DR routes (`promotion.OldPrimary`), with the caller's admin key."""

    def __init__(self, url: str, authorization: str | None, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": authorization} if authorization else {}
        self._timeout = timeout_s

    async def handover(self, to: str, timeout_s: float) -> dict[str, Any]:
        body = {"to": to, "timeout_s": timeout_s}
        return await self._call("POST", "/v1/dr/handover", body, timeout_s + 10)

    async def resume(self) -> dict[str, Any]:
        return await self._call("POST", "/v1/dr/resume", {}, OLD_PRIMARY_TIMEOUT_S)

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/dr/status", None, OLD_PRIMARY_TIMEOUT_S)

    async def _call(
        self, method: str, path: str, body: dict | None, timeout_s: float
    ) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as http:
                response = await http.request(
                    method, self.url + path, json=body, headers=self._headers
                )
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"region at {self.url} does not answer ({type(exc).__name__}); if it is gone, "
                "promote with mode forced"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text
            error = Conflict if response.status_code == 409 else Unavailable
            raise error(f"region at {self.url} answered {response.status_code}: {detail}")
        return response.json()
