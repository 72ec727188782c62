"""Every Cypher statement of the Neo4j backend, written for Neo4j 5, with a FalkorDB dialect.

Values always travel as parameters. Two things cannot be parameters in Cypher: relationship types
and variable-length hop bounds. Types are checked against TYPE_NAME_PATTERN (no backquote can pass)
and then backquoted; hop bounds are checked integers. Times are epoch microseconds (ints), since
FalkorDB fails on temporal parameters and crashes returning temporal values.

Entities are keyed by `key` (`<owner>/<id>`, see `models.node_key`) and carry `system_id` and
`id`; relationships carry `system_id` (their owner), which every traversal filters on.

Paths and neighbourhoods are a BFS driven by the store, one `expand` query per level, on both
dialects: the store counts what each level reached and stops at its frontier cap, which neither
Neo4j's `shortestPath` nor FalkorDB's `algo.SPpaths` can do (nor can they filter on owners and
validity inside the search on FalkorDB, which also returned a longer-than-shortest path here).

Where the dialects differ (FalkorDB was the only Bolt server these tests could run against):
- indexes: Neo4j 5 gets a uniqueness constraint on :Entity(key) and `IF NOT EXISTS` indexes;
  FalkorDB has neither, so its indexes are created only when `db.indexes()` lacks them;
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
from akasha_ray.graph.models import MAX_MEMORIES_CALL, SHARED, TYPE_NAME_PATTERN

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


# `r` valid at $as_of: valid_from <= t < valid_to, absent bounds are open.
_VALID = (
    "(r.valid_from IS NULL OR r.valid_from <= $as_of) "
    "AND (r.valid_to IS NULL OR $as_of < r.valid_to)"
)
_VISIBLE = "r.system_id IN $owners"
# One relationship as a map, the same shape from every query.
_REL = (
    "{id: r.id, system_id: r.system_id, source: startNode(r).id, target: endNode(r).id, "
    "source_key: startNode(r).key, target_key: endNode(r).key, type: type(r), "
    "properties: r.properties, created_at: r.created_at, valid_from: r.valid_from, "
    "valid_to: r.valid_to}"
)
_ENTITY = (
    "e.key AS key, e.system_id AS system_id, e.id AS id, e.type AS type, e.properties AS properties"
)

# -- schema -------------------------------------------------------------------------------------

NEO4J5_SCHEMA = (
    # Ids are unique per system now, not across the graph: the old constraint must go.
    "DROP CONSTRAINT akasha_entity_id IF EXISTS",
    "CREATE CONSTRAINT akasha_entity_key IF NOT EXISTS FOR (e:Entity) REQUIRE e.key IS UNIQUE",
    "CREATE INDEX akasha_entity_id IF NOT EXISTS FOR (e:Entity) ON (e.id)",
    "CREATE INDEX akasha_mention_entity IF NOT EXISTS FOR (m:MemoryMention) ON (m.entity_id)",
    "CREATE INDEX akasha_mention_memory IF NOT EXISTS FOR (m:MemoryMention) ON (m.memory_key)",
)
FALKORDB_INDEXES = {
    ("Entity", "key"): "CREATE INDEX FOR (e:Entity) ON (e.key)",
    ("Entity", "id"): "CREATE INDEX FOR (e:Entity) ON (e.id)",
    ("MemoryMention", "entity_id"): "CREATE INDEX FOR (m:MemoryMention) ON (m.entity_id)",
    ("MemoryMention", "memory_key"): "CREATE INDEX FOR (m:MemoryMention) ON (m.memory_key)",
}
FALKORDB_LIST_INDEXES = "CALL db.indexes() YIELD label, properties RETURN label, properties"
# Neo4j 5 has no dbms.procedures(); FalkorDB has, and lists its algo.* procedures there.
DETECT_FALKORDB = "CALL dbms.procedures() YIELD name RETURN collect(name) AS names"

# The graph before ownership becomes shared (ids kept: a shared relationship's id derives as
# before); its memory mentions named no system, so they go (re-ingest links again). A marker node
# (no :Entity, so no traversal or count sees it) says it was done, so a start scans nothing.
SCHEMA_VERSION = 2
GET_SCHEMA_VERSION = "MATCH (s:AkashaGraphSchema) RETURN s.version AS version"
SET_SCHEMA_VERSION = (
    "MERGE (s:AkashaGraphSchema {name: 'akasha'}) SET s.version = $version",
    {"version": SCHEMA_VERSION},
)
LEGACY = (
    (
        "MATCH (e:Entity) WHERE e.key IS NULL "
        "SET e.system_id = $shared, e.key = $shared + '/' + e.id",
        {"shared": SHARED},
    ),
    ("MATCH ()-[r]->() WHERE r.system_id IS NULL SET r.system_id = $shared", {"shared": SHARED}),
    ("MATCH (m:MemoryMention) WHERE m.memory_key IS NULL DELETE m", {}),
)

# -- entities and memory links ------------------------------------------------------------------

UPSERT_ENTITIES = """
UNWIND $rows AS row
MERGE (e:Entity {key: row.key})
SET e.system_id = row.system_id, e.id = row.id, e.type = row.type, e.properties = row.properties
"""
GET_ENTITIES = f"""
UNWIND $keys AS k
MATCH (e:Entity {{key: k}})
RETURN {_ENTITY}
"""
DELETE_ENTITY = """
MATCH (e:Entity {key: $key})
DETACH DELETE e
RETURN count(*) AS deleted
"""
OWNERS_OF_ID = "MATCH (e:Entity {id: $id}) RETURN e.system_id AS system_id"
DELETE_SYSTEM_MENTIONS = """
MATCH (m:MemoryMention {entity_id: $id, system_id: $system_id})
DELETE m
RETURN count(*) AS deleted
"""
# A shared entity: the mentions of every system that has no entity of its own under that id.
DELETE_SHARED_MENTIONS = """
MATCH (m:MemoryMention {entity_id: $id})
WHERE NOT m.system_id IN $owners
DELETE m
RETURN count(*) AS deleted
"""
# Mentions are nodes apart from the entity graph, so no path can run through a memory.
LINKS_OF_MEMORIES = """
UNWIND $keys AS k
MATCH (m:MemoryMention {memory_key: k})
RETURN m.memory_key AS memory_key, m.entity_id AS entity_id
"""
CREATE_MENTIONS = """
UNWIND $rows AS row
CREATE (:MemoryMention {memory_key: row.memory_key, system_id: row.system_id,
                        entity_id: row.entity_id})
"""
DELETE_MEMORY_MENTIONS = """
MATCH (m:MemoryMention {memory_key: $memory_key})
DELETE m
RETURN count(*) AS deleted
"""
# Simple counts, which Neo4j answers from its count store (only entities have relationships).
COUNT_ENTITIES = "MATCH (e:Entity) RETURN count(e) AS n"
COUNT_RELATIONSHIPS = "MATCH ()-[r]->() RETURN count(r) AS n"
COUNT_MENTIONS = "MATCH (m:MemoryMention) RETURN count(m) AS n"


def entity_memories(with_systems: bool, with_after: bool, limit: int) -> str:
    """Memory keys mentioning `$id`, in key order, at most `limit` (a checked int: LIMIT is
    written into the text, as FalkorDB may not take it as a parameter)."""
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int)
        or not 1 <= limit <= MAX_MEMORIES_CALL + 1
    ):
        raise ValueError(f"limit must be an int from 1 to {MAX_MEMORIES_CALL + 1}")
    tests = ["m.system_id IN $systems"] if with_systems else []
    tests += ["m.memory_key > $after"] if with_after else []
    where = f"WHERE {' AND '.join(tests)}" if tests else ""
    return f"""
MATCH (m:MemoryMention {{entity_id: $id}})
{where}
RETURN m.memory_key AS memory_key
ORDER BY memory_key
LIMIT {limit}
"""


def upsert_relationships(rel_type: str) -> str:
    """One statement per type: Cypher cannot take the type of a MERGEd relationship as data."""
    return f"""
UNWIND $rows AS row
MATCH (a:Entity {{key: row.source}})
MATCH (b:Entity {{key: row.target}})
MERGE (a)-[r:{quote_type(rel_type)} {{id: row.id}}]->(b)
SET r.system_id = row.system_id, r.properties = row.properties, r.created_at = row.created_at,
    r.valid_from = row.valid_from, r.valid_to = row.valid_to
"""


def drop_moved_relationships(rel_type: str) -> str:
    """Where an end id names both the system's entity and a shared one, the relationship may
    have been written to the other: drop that copy (found by id between the candidate ends)."""
    return f"""
UNWIND $rows AS row
UNWIND row.sources AS sk
UNWIND row.targets AS tk
MATCH (a:Entity {{key: sk}})-[r:{quote_type(rel_type)} {{id: row.id}}]->(b:Entity {{key: tk}})
WHERE NOT (sk = row.source AND tk = row.target)
DELETE r
"""


# -- traversal ----------------------------------------------------------------------------------


def expand(
    types: tuple[str, ...] | None, direction: str, with_as_of: bool, with_owners: bool = False
) -> str:
    """Every relationship leaving a frontier (node keys): one BFS level of neighbourhoods and
    paths. `direction` is "out", "in" or "both", relative to the frontier entity `a`."""
    left, right = {"out": ("-", "->"), "in": ("<-", "-"), "both": ("-", "-")}[direction]
    tests = [_VALID] if with_as_of else []
    tests += [_VISIBLE] if with_owners else []
    where = f"WHERE {' AND '.join(tests)}" if tests else ""
    return f"""
UNWIND $frontier AS fk
MATCH (a:Entity {{key: fk}}){left}[r{_types(types)}]{right}(b:Entity)
{where}
RETURN a.key AS from_key, b.key AS to_key, {_REL} AS rel
"""
