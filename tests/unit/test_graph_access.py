"""Who may reach what in the graph: a key turned into a write's owner and a read's scope."""

from __future__ import annotations

import pytest

from akasha_ray.auth import Principal
from akasha_ray.errors import Forbidden, InvalidInput
from akasha_ray.graph import access
from akasha_ray.graph.models import Entity, Relationship, relationship_id

ADMIN = Principal(admin=True)
ONE = Principal(admin=False, system_ids=frozenset({"a"}))
TWO = Principal(admin=False, system_ids=frozenset({"a", "b"}))


def test_owner_of_a_write():
    assert access.owner(ADMIN, None) is None  # shared
    assert access.owner(ADMIN, "z") == "z"
    assert access.owner(ONE, None) == "a"
    assert access.owner(ONE, "a") == "a"
    assert access.owner(TWO, "b") == "b"
    with pytest.raises(Forbidden) as err:
        access.owner(ONE, "b", "entities.system_id")
    assert err.value.field == "entities.system_id"
    with pytest.raises(InvalidInput) as err:
        access.owner(TWO, None)
    assert err.value.field == "system_id"


def test_owned_entities_and_relationships():
    entities = [Entity(id="x", type="T"), Entity(id="y", type="T", system_id="a")]
    assert [e.system_id for e in access.owned_entities(ONE, entities)] == ["a", "a"]
    assert [e.system_id for e in access.owned_entities(ADMIN, entities)] == [None, "a"]
    with pytest.raises(Forbidden):
        access.owned_entities(ONE, [Entity(id="x", type="T", system_id="b")])
    rel = Relationship(source="x", target="y", type="T")
    owned = access.owned_relationships(ONE, [rel])[0]
    assert (owned.system_id, owned.id) == ("a", relationship_id("x", "T", "y", None, "a"))
    assert access.owned_relationships(ADMIN, [rel])[0] is rel
    with pytest.raises(InvalidInput) as err:
        access.owned_relationships(TWO, [rel])
    assert err.value.field == "relationships.system_id"


def test_read_scope_and_memory_systems():
    assert access.read_scope(ADMIN, None) == (None, None)
    assert access.read_scope(ADMIN, "a") == ("a", None)
    assert access.read_scope(ONE, None) == ("a", ["a"])
    assert access.read_scope(TWO, "b") == ("b", ["a", "b"])
    with pytest.raises(InvalidInput):
        access.read_scope(TWO, None)
    with pytest.raises(Forbidden):
        access.read_scope(ONE, "b")
    assert access.memory_systems(ADMIN, None) is None
    assert access.memory_systems(ADMIN, "b") == ["b"]
    assert access.memory_systems(TWO, None) == ["a", "b"]
    assert access.memory_systems(TWO, "a") == ["a"]
    with pytest.raises(Forbidden) as err:
        access.memory_systems(ONE, "b")
    assert err.value.field == "system_id"
