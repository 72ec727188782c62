"""Search planning and merging, independent of where the tiers run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ray.exceptions import RayError

from akasha_ray.errors import AkashaError
from akasha_ray.routing import shard_for


def plan_hot(system_ids: list[str] | None, shards: int) -> dict[int, list[str] | None]:
    """Which shards to ask, each with the systems it owns (None: every system, every shard)."""
    if system_ids is None:
        return dict.fromkeys(range(shards))
    plan: dict[int, list[str]] = {}
    for system_id in dict.fromkeys(system_ids):  # de-duplicated, order kept
        plan.setdefault(shard_for(system_id, shards), []).append(system_id)
    return plan


def merge_hits(hit_lists: Iterable[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """Merge by similarity, highest first; a memory (`(system_id, id)`) seen twice (e.g.
    mid-move) counts once."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for hits in hit_lists:
        for hit in hits:
            key = (hit["system_id"], hit["id"])
            kept = best.get(key)
            if kept is None or hit["similarity"] > kept["similarity"]:
                best[key] = hit
    ranked = sorted(best.values(), key=lambda h: (-h["similarity"], h["system_id"], h["id"]))
    return ranked[:limit]


RRF_K = 10  # reciprocal rank fusion's constant (README "Search modes": 60 gave 0.61, 10 gave 0.65)
HYBRID_DEPTH = 50  # how many hits of each ranking a hybrid search fuses (at least `limit`)


def merge_keyword_hits(
    hit_lists: Iterable[list[dict[str, Any]]], limit: int
) -> list[dict[str, Any]]:
    """Merge by BM25 score (`bm25`), highest first, one hit per memory. Each tier scores with
    its own statistics (as Elasticsearch's shards do by default)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for hits in hit_lists:
        for hit in hits:
            key = (hit["system_id"], hit["id"])
            kept = best.get(key)
            if kept is None or hit["bm25"] > kept["bm25"]:
                best[key] = hit
    ranked = sorted(best.values(), key=lambda h: (-h["bm25"], h["system_id"], h["id"]))
    return ranked[:limit]


def fuse(
    by_vector: list[dict[str, Any]], by_keyword: list[dict[str, Any]], limit: int, k: int = RRF_K
) -> list[dict[str, Any]]:
    """Reciprocal rank fusion of two rankings (each best first, one hit per memory): a memory
    scores the sum of 1 / (k + rank) over the rankings holding it; `score` is that sum, and a
    hit keeps its cosine `similarity` when the vector ranking holds it (None otherwise)."""
    fused: dict[tuple[str, str], dict[str, Any]] = {}
    for ranking in (by_vector, by_keyword):
        for rank, hit in enumerate(ranking, start=1):
            key = (hit["system_id"], hit["id"])
            kept = fused.setdefault(key, {**hit, "similarity": hit.get("similarity"), "score": 0.0})
            kept["score"] += 1.0 / (k + rank)
    ranked = sorted(fused.values(), key=lambda h: (-h["score"], h["system_id"], h["id"]))
    return ranked[:limit]


@dataclass
class TierAnswer:
    """What one tier answered within the time allowed, or why it did not."""

    hits: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    error: str | None = None


async def ask_tiers(
    calls: dict[str, Callable[[], Awaitable[list[dict[str, Any]]]]], timeout_s: float
) -> dict[str, TierAnswer]:
    """Ask every tier at once; a tier that fails or runs out of time leaves an error, not a gap
    in the others' answers."""

    async def one(call: Callable[[], Awaitable[list[dict[str, Any]]]]) -> TierAnswer:
        started = time.perf_counter()
        try:
            hits = await asyncio.wait_for(call(), timeout_s)
            error = None
        except TimeoutError:
            hits, error = [], f"no answer within {timeout_s} s"
        except PartialTier as exc:
            hits, error = exc.hits, str(exc)
        except (AkashaError, RayError) as exc:
            hits, error = [], f"{type(exc).__name__}: {exc}"[:300]
        return TierAnswer(hits, (time.perf_counter() - started) * 1000, error)

    answers = await asyncio.gather(*(one(call) for call in calls.values()))
    return dict(zip(calls, answers, strict=True))


class PartialTier(AkashaError):
    """A tier answered with some of its parts only (e.g. one hot shard of several failed)."""

    code = "partial"

    def __init__(self, message: str, hits: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.hits = hits
