"""Promotion: make this region the primary, planned (a switchover) or forced (a failover).

Planned, asked of the target: the old primary stops taking writes and ships what it logged
(`handover`, run on the old primary; refused, and writes resumed, if more than
`switchover_max_lag` changes are still unshipped after `sync_timeout_s`); the target applies all
of it; then the witness advances. Nothing acknowledged is lost.

Forced, when the old primary is gone: the target applies what its bucket holds, then advances
the witness by compare-and-swap, so of two promotions at once exactly one wins (the other gets
`Fenced`, a 409). What the old primary had logged beyond that is reported as the possible loss
when its status can still be read, else "unknown".

Either way the target then tells its change log (writes are taken from now) and its
coordinators (they re-read the witness and start shipping to every other region). The old
primary learns from the witness at its next check and refuses writes (503 naming the new one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from akasha_ray.config import Settings
from akasha_ray.errors import AkashaError, Conflict, InvalidInput, Unavailable
from akasha_ray.replication.coordinator import ChangeLogPort, WitnessPort
from akasha_ray.replication.regions import RegionsView, promotable

Mode = Literal["planned", "forced"]
CatchUp = Callable[[Mapping[str, int] | None, float], Awaitable[dict[str, Any]]]


class OldPrimary(Protocol):
    """The region being replaced, over its API (HTTP) or, in tests, its actors."""

    async def handover(self, to: str, timeout_s: float) -> dict[str, Any]: ...
    async def resume(self) -> dict[str, Any]: ...
    async def status(self) -> dict[str, Any]: ...


# -- on the old primary ---------------------------------------------------------------------------


async def handover(
    settings: Settings, log: ChangeLogPort, witness: WitnessPort, to: str, timeout_s: float
) -> dict[str, Any]:
    """Stop taking writes (they get a 503 naming `to`) and wait until `to`'s bucket holds the
    whole log. Conflict, with writes taken again, when more than `switchover_max_lag` changes
    are still unshipped after `timeout_s`."""
    dr = settings.dr
    state = await log.state()
    if state["primary"] != dr.region:
        raise Conflict(f"region {dr.region} is not the primary (the primary is {state['primary']})")
    if to not in {r.name for r in dr.others()}:
        raise InvalidInput(f"no other region {to!r}", field="to")
    await log.set_state(state["epoch"], to)  # from here on, appends are refused
    deadline = time.monotonic() + timeout_s
    while True:
        logged = await log.last()
        shipped = (await log.shipped()).get(to, {})
        lag = _lag(logged, shipped)
        if lag == 0:
            break
        if time.monotonic() >= deadline:
            if lag > dr.switchover_max_lag:
                await resume(settings, log, witness)
                raise Conflict(
                    f"{lag} changes are still not shipped to {to} after {timeout_s} s "
                    f"(dr.switchover_max_lag is {dr.switchover_max_lag}): writes taken again; "
                    "retry, or promote with --force if this region is failing"
                )
            break
        await asyncio.sleep(0.05)
    return {"epoch": state["epoch"], "logged": logged, "shipped": shipped, "unshipped": lag}


async def resume(settings: Settings, log: ChangeLogPort, witness: WitnessPort) -> dict[str, Any]:
    """After a handover whose promotion failed: take writes again, but only while the witness
    still names this region at the same epoch (else the promotion did happen)."""
    here = settings.dr.region
    state = await log.state()
    seen = await asyncio.to_thread(witness.read)
    if seen is None or seen.primary != here or seen.epoch != state["epoch"]:
        named = "nobody" if seen is None else f"{seen.primary} at epoch {seen.epoch}"
        raise Conflict(f"the witness names {named}: region {here} stays out of writes")
    return await log.set_state(seen.epoch, here)


# -- on the target --------------------------------------------------------------------------------


async def promote(
    settings: Settings,
    log: ChangeLogPort,
    witness: WitnessPort,
    catch_up: CatchUp,
    *,
    mode: Mode,
    old: OldPrimary | None,
    followers: Sequence[Callable[[], Awaitable[Any]]] = (),
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Promote this region; `catch_up(versions | None, timeout_s)` is its coordinator for the
    old primary (it applies while this waits). Returns what happened, the possible loss too."""
    dr = settings.dr
    here = dr.region
    assert here is not None
    seen = await asyncio.to_thread(witness.read)
    if seen is None:
        configured = next(r.name for r in dr.regions if r.role == "primary")
        seen = await asyncio.to_thread(witness.init, configured)
    try:
        promotable(RegionsView(dr, seen.epoch, seen.primary), here)
    except ValueError as exc:
        raise Conflict(str(exc), field="region") from exc
    wait_s = timeout_s if timeout_s is not None else max(60.0, 6 * dr.sync_timeout_s)
    report: dict[str, Any] = {"mode": mode, "previous_primary": seen.primary}
    if mode == "planned":
        if old is None:
            raise Unavailable(f"the primary {seen.primary} has no URL to ask for a handover")
        handed = await old.handover(here, dr.sync_timeout_s)
        try:
            caught = await catch_up(handed["shipped"], wait_s)
            if not caught["caught_up"]:
                raise Unavailable(
                    f"region {here} did not apply {seen.primary}'s log within {wait_s} s "
                    f"(applied {caught['applied']}, needed {caught['target']}; last error "
                    f"{caught['last_error']}); {seen.primary} takes writes again"
                )
            new = await asyncio.to_thread(witness.advance, seen, here)
        except BaseException:
            await _resume_quietly(old, report)
            raise
        report["lost"] = {"changes": handed["unshipped"], "streams": {}}
    else:
        caught = await catch_up(None, wait_s)
        if not caught["caught_up"]:
            raise Unavailable(
                f"region {here} did not apply what its bucket holds of {seen.primary}'s log "
                f"within {wait_s} s (applied {caught['applied']}, held {caught['target']}; last "
                f"error {caught['last_error']}); retry, or give a longer timeout_s"
            )
        new = await asyncio.to_thread(witness.advance, seen, here)  # Fenced: another won
        report["lost"] = await _possible_loss(old, seen.primary, caught["applied"])
    state = await log.set_state(new.epoch, here)
    for follow in followers:
        await follow()
    return {
        **report,
        "promoted": here,
        "epoch": new.epoch,
        "applied": caught["applied"],
        "writable": state["primary"] == here,
    }


async def _resume_quietly(old: OldPrimary, report: dict[str, Any]) -> None:
    try:
        await old.resume()
    except (AkashaError, OSError) as exc:  # the caller's error is the one raised; this is told
        report["resume_error"] = str(exc)


async def _possible_loss(
    old: OldPrimary | None, name: str, applied: Mapping[str, int]
) -> dict[str, Any] | str:
    """What the old primary logged beyond what was applied here, per stream, if it answers."""
    if old is None:
        return "unknown"
    try:
        status = await old.status()
    except (AkashaError, OSError):
        return "unknown"
    logged = status.get("logged") or {}
    if not logged:
        return "unknown"
    streams = {s: n - applied.get(s, 0) for s, n in logged.items() if n > applied.get(s, 0)}
    return {"changes": sum(streams.values()), "streams": streams, "from": name}


def _lag(logged: Mapping[str, int], shipped: Mapping[str, int]) -> int:
    return sum(max(0, n - shipped.get(s, 0)) for s, n in logged.items())
