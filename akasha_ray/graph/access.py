"""Who may reach what in the knowledge graph: a key's principal turned into the owner of a write
and the scope of a read, as the store calls take them (see `akasha_ray.graph.base`).

- A write goes to the `system_id` it names, which the key must hold (403 naming the field); left
  out, to the key's one system, or for the admin to the shared graph; a key holding several systems
  must name one (422).
- A read names entities within a home system (the same rule; the admin's home is the shared graph
  unless it names a system) and crosses the key's systems plus shared entities; the admin crosses
  everything. What a key may not read answers as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence

from akasha_ray.auth import Principal
from akasha_ray.errors import InvalidInput
from akasha_ray.graph.models import Entity, Relationship


def owner(principal: Principal, system_id: str | None, field: str = "system_id") -> str | None:
    """The system a write (or a read's ids) belongs to; None: the shared graph (admin only)."""
    if system_id is not None:
        principal.require_systems([system_id], field)
        return system_id
    if principal.admin:
        return None
    if len(principal.system_ids) == 1:
        return next(iter(principal.system_ids))
    raise InvalidInput(f"name the {field} (this key holds more than one system)", field=field)


def owned_entities(principal: Principal, entities: Sequence[Entity]) -> list[Entity]:
    return [
        e.model_copy(update={"system_id": owner(principal, e.system_id, "entities.system_id")})
        for e in entities
    ]


def owned_relationships(
    principal: Principal, relationships: Sequence[Relationship]
) -> list[Relationship]:
    return [
        r.owned_by(owner(principal, r.system_id, "relationships.system_id")) for r in relationships
    ]


def read_scope(principal: Principal, system_id: str | None) -> tuple[str | None, list[str] | None]:
    """(home system for ids, systems a traversal may cross; None: every one)."""
    home = owner(principal, system_id)
    return home, None if principal.admin else sorted(principal.system_ids)


def memory_systems(principal: Principal, system_id: str | None) -> list[str] | None:
    """Whose memories an entity's memory list shows: the named system, else every system of
    the key (None for the admin: all)."""
    if system_id is not None:
        principal.require_systems([system_id], "system_id")
        return [system_id]
    return None if principal.admin else sorted(principal.system_ids)
