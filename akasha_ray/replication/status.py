"""`/v1/dr/status` and the replication line of `/healthz`, from the change log's state and each
region coordinator's own status.

A coordinator that does not answer is an error in the status (never left out): an operator must
see that a region is not being shipped to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from akasha_ray.config import Settings
from akasha_ray.replication.coordinator import ChangeLogPort
from akasha_ray.replication.regions import RegionsView

STATUS_TIMEOUT_S = 5.0


async def gather(
    settings: Settings,
    log: ChangeLogPort,
    coordinators: Mapping[str, Awaitable[dict[str, Any]]],
    *,
    snapshot: Awaitable[dict[str, Any] | None] | None = None,
    timeout_s: float = STATUS_TIMEOUT_S,
) -> dict[str, Any]:
    """This region's state, what it logged, and one entry per other region."""
    dr = settings.dr
    if not dr.enabled:
        return {"enabled": False, "status": "ok"}
    names = list(coordinators)

    async def bounded(awaitable: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(_awaited(awaitable), timeout_s)

    state, logged, *answers = await asyncio.gather(
        bounded(log.state()),
        bounded(log.last()),
        *(bounded(coordinators[n]) for n in names),
        *([bounded(snapshot)] if snapshot is not None else []),
        return_exceptions=True,
    )
    last_snapshot = answers.pop() if snapshot is not None else None
    errors: list[str] = []
    out: dict[str, Any] = {"enabled": True, "region": dr.region, "mode": dr.mode}
    if isinstance(state, BaseException):
        errors.append(f"the change log does not answer: {_describe(state)}")
        out |= {"epoch": None, "primary": None, "role": None, "writable": False}
    else:
        view = RegionsView(dr, state["epoch"], state["primary"])
        out |= {
            "epoch": state["epoch"],
            "primary": state["primary"],
            "role": view.role(dr.region),  # type: ignore[arg-type]
            "writable": state["primary"] == dr.region,
        }
    out["logged"] = None if isinstance(logged, BaseException) else logged
    regions = []
    for name, answer in zip(names, answers, strict=True):
        config = next(r for r in dr.regions if r.name == name)
        entry: dict[str, Any] = {"name": name, "url": config.url, "bucket": config.bucket}
        if isinstance(answer, BaseException):
            message = f"coordinator region-{name} does not answer: {_describe(answer)}"
            entry["last_error"] = {"message": message}
            errors.append(message)
        else:
            entry |= {k: v for k, v in answer.items() if k != "region"}
            for key in ("last_error", "witness_error"):
                if entry.get(key):
                    errors.append(f"region {name}: {entry[key]['message']}")
            if entry.get("bucket_error"):
                errors.append(f"region {name}: {entry['bucket_error']}")
        regions.append(entry)
    out["regions"] = regions
    out["deposed"] = next((r["deposed"] for r in regions if r.get("deposed")), None)
    if isinstance(last_snapshot, BaseException):
        out["last_snapshot"] = {"error": _describe(last_snapshot)}
    else:
        out["last_snapshot"] = last_snapshot
    out["errors"] = errors
    out["status"] = "failing" if errors else "ok"
    return out


def health(status: Mapping[str, Any]) -> dict[str, Any]:
    """The `replication` component of /healthz: failing, with the first error, when any."""
    component: dict[str, Any] = {"status": status["status"]}
    if status.get("enabled"):
        component |= {"role": status.get("role"), "epoch": status.get("epoch")}
        lags = [r.get("lag_s") for r in status.get("regions", []) if r.get("lag_s") is not None]
        component["max_lag_s"] = max(lags, default=0.0)
    if status.get("errors"):
        component["error"] = status["errors"][0]
    return component


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
