"""Awaiting Ray actor calls with Akasha's errors: what every caller of an actor shares."""

from __future__ import annotations

import asyncio

import ray

from akasha_ray.errors import AkashaError, Unavailable


async def call(awaitable, component: str, timeout_s: float):
    """Await an actor call (or several): an AkashaError raised in an actor keeps its status, a
    dead actor or a timeout is Unavailable (503)."""
    try:
        return await asyncio.wait_for(awaited(awaitable), timeout_s)
    except TimeoutError as exc:
        raise Unavailable(f"{component} did not answer within {timeout_s} s") from exc
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, AkashaError):  # e.g. NotFound raised by the store: its status
            raise exc.cause from None
        raise Unavailable(f"{component} failed: {type(exc.cause).__name__}") from exc
    except ray.exceptions.RayActorError as exc:
        raise Unavailable(f"{component} is not available (restarting?)") from exc


async def awaited(ref):
    """An ObjectRef (or any awaitable) as a coroutine, for asyncio.wait_for and gather."""
    return await ref
