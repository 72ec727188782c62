"""Search planning and merging, independent of where the tiers run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
    """Merge by similarity, highest first; a memory seen twice (e.g. mid-move) counts once."""
    best: dict[str, dict[str, Any]] = {}
    for hits in hit_lists:
        for hit in hits:
            kept = best.get(hit["id"])
            if kept is None or hit["similarity"] > kept["similarity"]:
                best[hit["id"]] = hit
    ranked = sorted(best.values(), key=lambda h: (-h["similarity"], h["id"]))
    return ranked[:limit]
