"""Graph records and argument checks, and the Cypher text: what reaches a query is safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from akasha_ray.errors import InvalidInput
from akasha_ray.graph import cypher
from akasha_ray.graph.models import (
    Entity,
    Relationship,
    check_as_of,
    check_bounded_int,
    check_types,
    epoch_us,
    from_epoch_us,
    relationship_id,
)
from tests.servers.graph_suite import HOSTILE_TYPES

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def test_relationship_id_is_derived_from_what_identifies_it():
    rel = Relationship(source="a", target="b", type="KNOWS", properties={"x": 1})
    assert rel.id == relationship_id("a", "KNOWS", "b", None)
    again = Relationship(source="a", target="b", type="KNOWS", created_at=T0, id=rel.id)
    assert again.id == rel.id
    assert Relationship(source="b", target="a", type="KNOWS").id != rel.id
    assert Relationship(source="a", target="b", type="KNOWS", valid_from=T0).id != rel.id
    with pytest.raises(ValidationError, match="does not match"):
        Relationship(source="a", target="b", type="LIKES", id=rel.id, system_id="s")
    # The owner is part of the id; when the key supplies it, `owned_by` checks a sent id.
    owned = relationship_id("a", "KNOWS", "b", None, "s")
    assert owned != rel.id
    sent = Relationship(source="a", target="b", type="KNOWS", id=owned)
    assert sent.owned_by("s").id == owned and sent.owned_by("s").system_id == "s"
    with pytest.raises(InvalidInput, match="does not match") as err:
        sent.owned_by("t")
    assert err.value.field == "relationships.id"
    with pytest.raises(InvalidInput):
        sent.owned_by(None)
    assert rel.owned_by(None) is rel


def test_relationship_times():
    with pytest.raises(ValidationError, match="later than valid_from"):
        Relationship(source="a", target="b", type="T", valid_from=T0, valid_to=T0)
    with pytest.raises(ValidationError):
        Relationship(source="a", target="b", type="T", created_at=datetime(2025, 3, 1))
    paris = timezone(timedelta(hours=1))
    rel = Relationship(
        source="a", target="b", type="T", valid_from=datetime(2025, 3, 1, 1, tzinfo=paris)
    )
    assert rel.valid_from == T0 and rel.valid_from.tzinfo == UTC
    assert rel.valid_at(T0) and not rel.valid_at(T0 - timedelta(microseconds=1))


def test_properties_must_be_bounded_json():
    with pytest.raises(ValidationError):
        Entity(id="a", type="T", properties={"x": float("nan")})
    with pytest.raises(ValidationError, match="bytes as JSON"):
        Entity(id="a", type="T", properties={"x": "y" * 70_000})
    with pytest.raises(ValidationError):
        Entity(id="a", type="T", properties={"x": object()})
    with pytest.raises(ValidationError):
        Entity(id="a", type="T", colour="red")


def test_epoch_microseconds_round_trip():
    for moment in (T0, T0 + timedelta(microseconds=1), datetime(1900, 1, 1, tzinfo=UTC)):
        assert from_epoch_us(epoch_us(moment)) == moment


def test_argument_checks():
    assert check_types(None) is None
    assert check_types(["B", "A", "B"]) == ("A", "B")
    for bad in ([], "A", ["A", None], *([t] for t in HOSTILE_TYPES)):
        with pytest.raises(InvalidInput):
            check_types(bad)
    assert check_bounded_int(5, 1, 10, "max_hops") == 5
    for bad in (0, 11, True, 5.0, "5"):
        with pytest.raises(InvalidInput):
            check_bounded_int(bad, 1, 10, "max_hops")
    assert check_as_of(None) is None
    assert check_as_of(T0) == epoch_us(T0)
    with pytest.raises(InvalidInput):
        check_as_of(datetime(2025, 3, 1))


def test_cypher_quotes_only_strict_type_names():
    assert cypher.quote_type("WORKS_AT") == "`WORKS_AT`"
    for bad in HOSTILE_TYPES:
        with pytest.raises(ValueError, match="does not match"):
            cypher.quote_type(bad)
    query = cypher.upsert_relationships("KNOWS")
    assert "[r:`KNOWS` {id: row.id}]" in query


def test_cypher_expand_directions():
    assert "(a:Entity {key: fk})-[r:`A`]->(b:Entity)" in cypher.expand(("A",), "out", False)
    assert "(a:Entity {key: fk})<-[r]-(b:Entity)" in cypher.expand(None, "in", False)
    both = cypher.expand(None, "both", True)
    assert "(a:Entity {key: fk})-[r]-(b:Entity)" in both and "$as_of" in both
    assert "$owners" not in both
    assert "r.system_id IN $owners" in cypher.expand(None, "both", False, True)


def test_cypher_memory_pages_take_a_checked_limit():
    query = cypher.entity_memories(True, True, 11)
    assert "LIMIT 11" in query and "$systems" in query and "$after" in query
    assert "WHERE" not in cypher.entity_memories(False, False, 1)
    for bad in (0, 100_002, True, "5", 2.0):
        with pytest.raises(ValueError):
            cypher.entity_memories(False, False, bad)
