"""Graph records and argument checks, and the Cypher text: what reaches a query is safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from akasha_ray.errors import InvalidInput
from akasha_ray.graph import cypher
from akasha_ray.graph.cypher import Dialect
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
        Relationship(source="a", target="b", type="LIKES", id=rel.id)


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


@pytest.mark.parametrize("dialect", list(Dialect))
def test_cypher_paths_take_checked_bounds_and_types(dialect):
    for hops in (0, 11, True, "5"):
        with pytest.raises(ValueError):
            cypher.shortest_path(dialect, hops, None, False, False)
    query = cypher.shortest_path(dialect, 7, ("A", "B"), False, False)
    if dialect is Dialect.NEO4J5:
        assert "shortestPath((a)-[:`A`|`B`*1..7]-(b))" in query
        assert "as_of" in cypher.shortest_path(dialect, 7, None, True, True)
        assert "*1..3]->(b)" in cypher.shortest_path(dialect, 3, None, True, False)
    else:
        assert "maxLen: 7" in query and "relTypes: $types" in query
        assert "relDirection: 'outgoing'" in cypher.shortest_path(dialect, 3, None, True, False)
        assert "relTypes" not in cypher.shortest_path(dialect, 3, None, False, False)
        # FalkorDB cannot filter inside a shortest-path search: the store runs its own BFS.
        assert cypher.shortest_path(dialect, 3, None, False, True) is None


def test_cypher_expand_directions():
    assert "(a:Entity {id: fid})-[r:`A`]->(b:Entity)" in cypher.expand(("A",), "out", False)
    assert "(a:Entity {id: fid})<-[r]-(b:Entity)" in cypher.expand(None, "in", False)
    both = cypher.expand(None, "both", True)
    assert "(a:Entity {id: fid})-[r]-(b:Entity)" in both and "$as_of" in both
