"""Every Cypher statement of the Neo4j backend, written for Neo4j 5, with a FalkorDB dialect.

Values always travel as parameters. Two things cannot be parameters in Cypher: relationship types
and variable-length hop bounds. Types are checked against TYPE_NAME_PATTERN (no backquote can pass)
and then backquoted; hop bounds are checked integers. Times are epoch microseconds (ints), since
FalkorDB fails on temporal parameters and crashes returning temporal values.

Where the dialects differ (FalkorDB was the only Bolt server these tests could run against):
- indexes: Neo4j 5 gets a uniqueness constraint on :Entity(id) and `IF NOT EXISTS` indexes;
  FalkorDB has neither, so its indexes are created only when `db.indexes()` lacks them;
- shortest path: Neo4j 5 uses `shortestPath` in MATCH with the validity test in WHERE (applied
  during the search). FalkorDB allows `shortestPath` only in WITH/RETURN, only directed, with no
  filter inside, and it returned a longer-than-shortest untyped directed path in a test here; so
  FalkorDB paths go through `algo.SPpaths` (relDirection 'outgoing' or 'both'), and paths `as_of` a
  time run as a bidirectional BFS driven by the store, one `expand` query per level;
- property text: FalkorDB's Bolt layer writes parameters into the query text and mishandles
  quotes and backslashes inside strings (`it's` fails to parse, `a\\"b` comes back as `a"b`).
  Ids, type names and memory ids cannot hold those characters; the JSON text of properties, which
  can, travels base64-encoded on that dialect (`encode_properties` / `decode_properties` here);
- statement size: the same layer crashed the server (SIGSEGV) once a statement with its parameters
  passed about 4 KiB, so on FalkorDB list parameters are cut into pieces of at most
  FALKORDB_PARAM_BYTES (`param_chunks`), and a single row bigger than that is refused.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any, TypeVar

from akasha_ray.errors import InvalidInput
from akasha_ray.graph import models
from akasha_ray.graph.models import MAX_HOPS, MIN_HOPS, TYPE_NAME_PATTERN

_TYPE_NAME = re.compile(TYPE_NAME_PATTERN)
NEO4J_ROWS_PER_STATEMENT = 5000
FALKORDB_PARAM_BYTES = 3000  # our statements are under 1 KiB; FalkorDB 4.16 failed past ~4 KiB
T = TypeVar("T")


class Dialect(Enum):
    NEO4J5 = "neo4j5"
    FALKORDB = "falkordb"


def param_chunks(dialect: Dialect, items: Sequence[T]) -> Iterator[list[T]]:
    """`items` in pieces small enough for one statement's list parameter."""
    if dialect is Dialect.NEO4J5:
        for start in range(0, len(items), NEO4J_ROWS_PER_STATEMENT):
            yield list(items[start : start + NEO4J_ROWS_PER_STATEMENT])
        return
    piece: list[T] = []
    size = 0
    for item in items:
        cost = len(json.dumps(item)) + 2
        if cost > FALKORDB_PARAM_BYTES:
            raise InvalidInput(
                f"a row of {cost} bytes is too big for FalkorDB's Bolt endpoint "
                f"(at most {FALKORDB_PARAM_BYTES}); Neo4j takes it",
                field="properties",
            )
        if piece and size + cost > FALKORDB_PARAM_BYTES:
            yield piece
            piece, size = [], 0
        piece.append(item)
        size += cost
    if piece:
        yield piece


def encode_properties(dialect: Dialect, properties: dict[str, Any]) -> str:
    text = models.encode_properties(properties)
    if dialect is Dialect.FALKORDB:
        return base64.b64encode(text.encode()).decode("ascii")
    return text


def decode_properties(dialect: Dialect, stored: str | None) -> dict[str, Any]:
    if stored and dialect is Dialect.FALKORDB:
        stored = base64.b64decode(stored).decode()
    return models.decode_properties(stored)


def quote_type(name: str) -> str:
    """A relationship type as a Cypher identifier, only if it matches the strict pattern."""
    if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
        raise ValueError(f"relationship type {name!r} does not match {TYPE_NAME_PATTERN}")
    return f"`{name}`"


def _types(types: tuple[str, ...] | None) -> str:
    return "" if not types else ":" + "|".join(quote_type(t) for t in types)


def _hops(max_hops: int) -> int:
    if isinstance(max_hops, bool) or not isinstance(max_hops, int):
        raise ValueError("max_hops must be an int")
    if not MIN_HOPS <= max_hops <= MAX_HOPS:
        raise ValueError(f"max_hops must be from {MIN_HOPS} to {MAX_HOPS}")
    return max_hops


# `r` valid at $as_of: valid_from <= t < valid_to, absent bounds open.
_VALID = (
    "(r.valid_from IS NULL OR r.valid_from <= $as_of) "
    "AND (r.valid_to IS NULL OR $as_of < r.valid_to)"
)
# One relationship as a map, the same shape from every query.
_REL = (
    "{id: r.id, source: startNode(r).id, target: endNode(r).id, type: type(r), "
    "properties: r.properties, created_at: r.created_at, valid_from: r.valid_from, "
    "valid_to: r.valid_to}"
)

# -- schema -------------------------------------------------------------------------------------

NEO4J5_SCHEMA = (
    "CREATE CONSTRAINT akasha_entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE",
    "CREATE INDEX akasha_mention_entity IF NOT EXISTS FOR (m:MemoryMention) ON (m.entity_id)",
    "CREATE INDEX akasha_mention_memory IF NOT EXISTS FOR (m:MemoryMention) ON (m.memory_id)",
)
FALKORDB_INDEXES = {
    ("Entity", "id"): "CREATE INDEX FOR (e:Entity) ON (e.id)",
    ("MemoryMention", "entity_id"): "CREATE INDEX FOR (m:MemoryMention) ON (m.entity_id)",
    ("MemoryMention", "memory_id"): "CREATE INDEX FOR (m:MemoryMention) ON (m.memory_id)",
}
FALKORDB_LIST_INDEXES = "CALL db.indexes() YIELD label, properties RETURN label, properties"
# Neo4j 5 has no dbms.procedures(); FalkorDB has, and lists its algo.* procedures there.
DETECT_FALKORDB = "CALL dbms.procedures() YIELD name RETURN collect(name) AS names"

# -- entities and memory links ------------------------------------------------------------------

UPSERT_ENTITIES = """
UNWIND $rows AS row
MERGE (e:Entity {id: row.id})
SET e.type = row.type, e.properties = row.properties
"""
GET_ENTITIES = """
UNWIND $ids AS id
MATCH (e:Entity {id: id})
RETURN e.id AS id, e.type AS type, e.properties AS properties
"""
DELETE_ENTITY = """
MATCH (e:Entity {id: $id})
DETACH DELETE e
RETURN count(*) AS deleted
"""
DELETE_ENTITY_MENTIONS = """
MATCH (m:MemoryMention {entity_id: $id})
DELETE m
RETURN count(*) AS deleted
"""
# Mentions are nodes apart from the entity graph, so no path can run through a memory.
LINKED_ENTITIES = """
MATCH (m:MemoryMention {memory_id: $memory_id})
WHERE m.entity_id IN $entity_ids
RETURN m.entity_id AS entity_id
"""
CREATE_MENTIONS = """
UNWIND $entity_ids AS entity_id
CREATE (:MemoryMention {memory_id: $memory_id, entity_id: entity_id})
"""
DELETE_MEMORY_MENTIONS = """
MATCH (m:MemoryMention {memory_id: $memory_id})
DELETE m
RETURN count(*) AS deleted
"""
ENTITY_MEMORIES = """
MATCH (m:MemoryMention {entity_id: $id})
RETURN m.memory_id AS memory_id
ORDER BY memory_id
"""
# Simple counts, which Neo4j answers from its count store (only entities have relationships).
COUNT_ENTITIES = "MATCH (e:Entity) RETURN count(e) AS n"
COUNT_RELATIONSHIPS = "MATCH ()-[r]->() RETURN count(r) AS n"
COUNT_MENTIONS = "MATCH (m:MemoryMention) RETURN count(m) AS n"


def upsert_relationships(rel_type: str) -> str:
    """One statement per type: Cypher cannot take the type of a MERGEd relationship as data."""
    return f"""
UNWIND $rows AS row
MATCH (a:Entity {{id: row.source}})
MATCH (b:Entity {{id: row.target}})
MERGE (a)-[r:{quote_type(rel_type)} {{id: row.id}}]->(b)
SET r.properties = row.properties, r.created_at = row.created_at,
    r.valid_from = row.valid_from, r.valid_to = row.valid_to
"""


# -- traversal ----------------------------------------------------------------------------------


def expand(types: tuple[str, ...] | None, direction: str, with_as_of: bool) -> str:
    """Every relationship leaving a frontier: one BFS level for neighbours and FalkorDB paths.

    `direction` is "out", "in" or "both", relative to the frontier entity `a`.
    """
    left, right = {"out": ("-", "->"), "in": ("<-", "-"), "both": ("-", "-")}[direction]
    where = f"WHERE {_VALID}" if with_as_of else ""
    return f"""
UNWIND $frontier AS fid
MATCH (a:Entity {{id: fid}}){left}[r{_types(types)}]{right}(b:Entity)
{where}
RETURN a.id AS from_id, b.id AS to_id, {_REL} AS rel
"""


def shortest_path(
    dialect: Dialect,
    max_hops: int,
    types: tuple[str, ...] | None,
    directed: bool,
    with_as_of: bool,
) -> str | None:
    """A query returning `ids` and `rels` of one shortest path, or None where the dialect has
    no such query (FalkorDB with `as_of`): the store then runs its own BFS over `expand`."""
    hops = _hops(max_hops)
    arrow = "->" if directed else "-"
    pattern = f"[{_types(types)}*1..{hops}]"
    result = f"RETURN [n IN nodes(p) | n.id] AS ids, [r IN relationships(p) | {_REL}] AS rels"
    ends = "MATCH (a:Entity {id: $source}), (b:Entity {id: $target})"
    if dialect is Dialect.NEO4J5:
        where = f"WHERE all(r IN relationships(p) WHERE {_VALID})" if with_as_of else ""
        return f"{ends}\nMATCH p = shortestPath((a)-{pattern}{arrow}(b))\n{where}\n{result}"
    if with_as_of:
        return None
    # FalkorDB's shortestPath() missed a shorter untyped directed path here; algo.SPpaths did not.
    rel_types = "relTypes: $types, " if types else ""
    direction = "outgoing" if directed else "both"
    return (
        f"{ends}\nCALL algo.SPpaths({{sourceNode: a, targetNode: b, {rel_types}"
        f"relDirection: '{direction}', maxLen: {hops}}}) YIELD path\n"
        f"WITH path AS p LIMIT 1\n{result}"
    )
