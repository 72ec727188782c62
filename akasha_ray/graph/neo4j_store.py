"""Scale graph store: Neo4j 5 through the official driver's AsyncGraphDatabase.

One long-lived driver per store (the `graph` actor owns it); every call is a managed transaction
(`execute_read` / `execute_write`), which the driver retries on transient faults. The Cypher lives
in `akasha_ray.graph.cypher`. Entities are `(:Entity {id, type, properties})` nodes with their
properties as JSON text (Neo4j properties cannot hold maps; base64 on FalkorDB, see `cypher`);
relationships carry their id, JSON properties and times as epoch microseconds; memory links are
`(:MemoryMention)` nodes apart from the entity graph.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j.exceptions import ClientError, ServiceUnavailable, SessionExpired

from akasha_ray.errors import NotFound, Unavailable
from akasha_ray.graph import cypher
from akasha_ray.graph.cypher import Dialect
from akasha_ray.graph.models import (
    DEFAULT_HOPS,
    MAX_DEPTH,
    MAX_HOPS,
    MAX_NEIGHBORS,
    MIN_HOPS,
    Entity,
    GraphStats,
    Neighbor,
    Neighborhood,
    PathResult,
    Relationship,
    check_as_of,
    check_bounded_int,
    check_entity_id,
    check_memory_id,
    check_types,
    epoch_us,
    from_epoch_us,
)

Rows = list[dict[str, Any]]
T = TypeVar("T")


async def _data(tx: AsyncManagedTransaction, query: str, params: dict[str, Any]) -> Rows:
    return await (await tx.run(query, params)).data()


async def _run_all(tx: AsyncManagedTransaction, statements: list[tuple[str, dict]]) -> list[Rows]:
    return [await _data(tx, query, params) for query, params in statements]


class Neo4jGraphStore:
    """The Neo4j `GraphStore`: `await Neo4jGraphStore.connect(uri, user=..., password=...)`."""

    backend = "neo4j"

    def __init__(
        self, driver: AsyncDriver, dialect: Dialect, database: str | None, owns_driver: bool
    ) -> None:
        self._driver = driver
        self.dialect = dialect
        self._database = database
        self._owns_driver = owns_driver

    @classmethod
    async def connect(
        cls,
        uri: str,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        dialect: Dialect | None = None,
        acquisition_timeout_s: float = 5.0,
    ) -> Neo4jGraphStore:
        # A short acquisition timeout bounds a stalled handshake (seen with FalkorDB), after
        # which the managed transaction retries on a fresh connection.
        driver = AsyncGraphDatabase.driver(
            uri,
            auth=(user, password or "") if user else None,
            connection_acquisition_timeout=acquisition_timeout_s,
        )
        try:
            return await cls.attach(driver, database=database, dialect=dialect, owns_driver=True)
        except BaseException:
            await driver.close()
            raise

    @classmethod
    async def attach(
        cls,
        driver: AsyncDriver,
        *,
        database: str | None = None,
        dialect: Dialect | None = None,
        owns_driver: bool = False,
    ) -> Neo4jGraphStore:
        """A store over an existing driver (tests share one across many databases)."""
        store = cls(driver, dialect or Dialect.NEO4J5, database, owns_driver)
        if dialect is None:
            store.dialect = await store._detect_dialect()
        await store._ensure_schema()
        return store

    # -- plumbing ------------------------------------------------------------------------------

    async def _execute(self, work: Callable[..., Awaitable[T]], *args: Any, write: bool) -> T:
        """Run `work(tx, *args)` as one managed transaction (retried by the driver)."""
        try:
            async with self._driver.session(database=self._database) as session:
                run = session.execute_write if write else session.execute_read
                return await run(work, *args)
        except (ServiceUnavailable, SessionExpired) as exc:
            raise Unavailable(f"graph database unreachable: {exc}") from exc

    async def _transaction(self, statements: list[tuple[str, dict]], *, write: bool) -> list[Rows]:
        return await self._execute(_run_all, statements, write=write)

    async def _read(self, query: str, **params: Any) -> Rows:
        return (await self._transaction([(query, params)], write=False))[0]

    async def _write(self, query: str, **params: Any) -> Rows:
        return (await self._transaction([(query, params)], write=True))[0]

    async def _detect_dialect(self) -> Dialect:
        try:
            rows = await self._read(cypher.DETECT_FALKORDB)
        except ClientError:  # Neo4j 5: no such procedure
            return Dialect.NEO4J5
        names = rows[0]["names"] if rows else []
        return Dialect.FALKORDB if "algo.SPpaths" in names else Dialect.NEO4J5

    async def _ensure_schema(self) -> None:
        if self.dialect is Dialect.NEO4J5:
            for statement in cypher.NEO4J5_SCHEMA:
                await self._write(statement)
            return
        present = {
            (row["label"], prop)
            for row in await self._read(cypher.FALKORDB_LIST_INDEXES)
            for prop in row["properties"]
        }
        for key, statement in cypher.FALKORDB_INDEXES.items():
            if key not in present:
                await self._write(statement)

    async def _existing(self, ids: Sequence[str]) -> set[str]:
        return {row["id"] for row in await self._entity_rows(ids)}

    async def _entity_rows(self, ids: Sequence[str]) -> Rows:
        rows: Rows = []
        for chunk in cypher.param_chunks(self.dialect, list(ids)):
            rows += await self._read(cypher.GET_ENTITIES, ids=chunk)
        return rows

    async def _require(self, **ends: str) -> None:
        existing = await self._existing(list(ends.values()))
        for field, entity_id in ends.items():
            if entity_id not in existing:
                raise NotFound(f"no entity {entity_id!r}", field=field)

    # -- writes ---------------------------------------------------------------------------------

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        if not entities:
            return 0
        check_types({e.type for e in entities}, "entities")  # models may come unvalidated
        rows = list(
            {
                e.id: {
                    "id": e.id,
                    "type": e.type,
                    "properties": cypher.encode_properties(self.dialect, e.properties),
                }
                for e in entities
            }.values()
        )
        for chunk in cypher.param_chunks(self.dialect, rows):
            await self._write(cypher.UPSERT_ENTITIES, rows=chunk)
        return len(rows)

    async def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        if not relationships:
            return 0
        # Types go into the query text (backquoted): refuse models that skipped validation.
        check_types({r.type for r in relationships}, "relationships")
        latest = {r.id: r for r in relationships}
        ends = sorted({end for r in latest.values() for end in (r.source, r.target)})
        missing = sorted(set(ends) - await self._existing(ends))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise NotFound(
                f"{len(missing)} relationship end(s) are not entities: {shown}",
                field="relationships",
            )
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in latest.values():
            by_type.setdefault(r.type, []).append(_relationship_row(r, self.dialect))
        for rel_type, rows in sorted(by_type.items()):
            query = cypher.upsert_relationships(rel_type)
            for chunk in cypher.param_chunks(self.dialect, rows):
                await self._write(query, rows=chunk)
        return len(latest)

    async def delete_entity(self, entity_id: str) -> bool:
        check_entity_id(entity_id)
        deleted, _ = await self._transaction(
            [
                (cypher.DELETE_ENTITY, {"id": entity_id}),
                (cypher.DELETE_ENTITY_MENTIONS, {"id": entity_id}),
            ],
            write=True,
        )
        return deleted[0]["deleted"] > 0

    async def link_memories(self, memory_id: str, entity_ids: Sequence[str]) -> int:
        check_memory_id(memory_id)
        wanted = sorted({check_entity_id(e, "entity_ids") for e in entity_ids})
        if not wanted:
            return 0

        async def link(tx: AsyncManagedTransaction) -> int:
            linked = set()
            for chunk in cypher.param_chunks(self.dialect, wanted):
                params = {"memory_id": memory_id, "entity_ids": chunk}
                linked |= {
                    row["entity_id"] for row in await _data(tx, cypher.LINKED_ENTITIES, params)
                }
            fresh = [e for e in wanted if e not in linked]
            for chunk in cypher.param_chunks(self.dialect, fresh):
                await _data(
                    tx, cypher.CREATE_MENTIONS, {"memory_id": memory_id, "entity_ids": chunk}
                )
            return len(fresh)

        return await self._execute(link, write=True)

    async def unlink_memory(self, memory_id: str) -> int:
        check_memory_id(memory_id)
        rows = await self._write(cypher.DELETE_MEMORY_MENTIONS, memory_id=memory_id)
        return rows[0]["deleted"]

    # -- reads ----------------------------------------------------------------------------------

    async def get_entity(self, entity_id: str) -> Entity | None:
        check_entity_id(entity_id)
        rows = await self._entity_rows([entity_id])
        return _entity(rows[0], self.dialect) if rows else None

    async def entity_memories(self, entity_id: str) -> list[str]:
        check_entity_id(entity_id)
        rows = await self._read(cypher.ENTITY_MEMORIES, id=entity_id)
        return [row["memory_id"] for row in rows]

    async def shortest_path(
        self,
        source: str,
        target: str,
        max_hops: int = DEFAULT_HOPS,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        directed: bool = False,
    ) -> PathResult:
        check_entity_id(source, "source")
        check_entity_id(target, "target")
        hops = check_bounded_int(max_hops, MIN_HOPS, MAX_HOPS, "max_hops")
        wanted_types = check_types(types)
        moment = check_as_of(as_of)
        await self._require(source=source, target=target)
        if source == target:
            return PathResult(path=[source], relationships=[])
        query = cypher.shortest_path(
            self.dialect, hops, wanted_types, bool(directed), moment is not None
        )
        if query is None:
            return await self._bfs_path(source, target, hops, wanted_types, moment, bool(directed))
        rows = await self._read(
            query, source=source, target=target, types=list(wanted_types or ()), as_of=moment
        )
        if not rows or rows[0]["ids"] is None:
            return PathResult(path=None, relationships=[])
        return PathResult(
            path=list(rows[0]["ids"]),
            relationships=[_relationship(r, self.dialect) for r in rows[0]["rels"]],
        )

    async def _expand(
        self,
        frontier: list[str],
        types: tuple[str, ...] | None,
        direction: str,
        moment: int | None,
    ) -> Rows:
        query = cypher.expand(types, direction, moment is not None)
        rows: Rows = []
        for chunk in cypher.param_chunks(self.dialect, frontier):
            rows += await self._read(query, frontier=chunk, as_of=moment)
        # Sorted so that ties resolve the same way on every run.
        return sorted(rows, key=lambda row: (row["to_id"], row["from_id"], row["rel"]["id"]))

    async def _bfs_path(
        self,
        source: str,
        target: str,
        hops: int,
        types: tuple[str, ...] | None,
        moment: int | None,
        directed: bool,
    ) -> PathResult:
        """Bidirectional BFS one query per level, for what the dialect cannot ask in one query.

        As in the embedded store: the first level at which the searches touch gives a shortest
        path, and each step grows the smaller frontier.
        """
        back_f: dict[str, tuple[str, dict] | None] = {source: None}
        back_b: dict[str, tuple[str, dict] | None] = {target: None}
        front_f, front_b = [source], [target]
        for _ in range(hops):
            if not front_f or not front_b:
                break
            forward = len(front_f) <= len(front_b)
            direction = ("out" if forward else "in") if directed else "both"
            front, back, other = (front_f, back_f, back_b) if forward else (front_b, back_b, back_f)
            reached = []
            for row in await self._expand(front, types, direction, moment):
                if row["to_id"] not in back:
                    back[row["to_id"]] = (row["from_id"], row["rel"])
                    reached.append(row["to_id"])
            if forward:
                front_f = reached
            else:
                front_b = reached
            meet = sorted(node for node in reached if node in other)
            if meet:
                return _join(meet[0], back_f, back_b, self.dialect)
        return PathResult(path=None, relationships=[])

    async def neighbors(
        self,
        entity_id: str,
        depth: int = 1,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        limit: int = 1000,
    ) -> Neighborhood:
        check_entity_id(entity_id)
        depth = check_bounded_int(depth, 1, MAX_DEPTH, "depth")
        limit = check_bounded_int(limit, 1, MAX_NEIGHBORS, "limit")
        wanted_types = check_types(types)
        moment = check_as_of(as_of)
        await self._require(id=entity_id)
        dist = {entity_id: 0}
        crossed: dict[str, dict] = {}
        front = [entity_id]
        for level in range(1, depth + 1):
            if not front:
                break
            reached = set()
            for row in await self._expand(front, wanted_types, "both", moment):
                crossed[row["rel"]["id"]] = row["rel"]
                if row["to_id"] not in dist:
                    reached.add(row["to_id"])
            for node in reached:
                dist[node] = level
            front = sorted(reached)
        ranked = sorted((d, node) for node, d in dist.items() if d > 0)
        kept = ranked[:limit]
        kept_ids = {entity_id} | {node for _, node in kept}
        rows = await self._entity_rows([node for _, node in kept])
        entities = {row["id"]: _entity(row, self.dialect) for row in rows}
        return Neighborhood(
            center=entity_id,
            neighbors=[Neighbor(entity=entities[node], depth=d) for d, node in kept],
            relationships=[
                _relationship(rel, self.dialect)
                for _, rel in sorted(crossed.items())
                if rel["source"] in kept_ids and rel["target"] in kept_ids
            ],
            truncated=len(ranked) > limit,
        )

    async def stats(self) -> GraphStats:
        entities, relationships, mentions = await self._transaction(
            [
                (cypher.COUNT_ENTITIES, {}),
                (cypher.COUNT_RELATIONSHIPS, {}),
                (cypher.COUNT_MENTIONS, {}),
            ],
            write=False,
        )
        return GraphStats(
            backend="neo4j",
            entities=entities[0]["n"],
            relationships=relationships[0]["n"],
            memory_links=mentions[0]["n"],
            details={"dialect": self.dialect.value, "database": self._database},
        )

    async def close(self) -> None:
        if self._owns_driver:
            await self._driver.close()


def _relationship_row(r: Relationship, dialect: Dialect) -> dict[str, Any]:
    return {
        "id": r.id,
        "source": r.source,
        "target": r.target,
        "properties": cypher.encode_properties(dialect, r.properties),
        "created_at": epoch_us(r.created_at),
        "valid_from": None if r.valid_from is None else epoch_us(r.valid_from),
        "valid_to": None if r.valid_to is None else epoch_us(r.valid_to),
    }


def _entity(row: dict[str, Any], dialect: Dialect) -> Entity:
    return Entity.model_construct(
        id=row["id"],
        type=row["type"],
        properties=cypher.decode_properties(dialect, row["properties"]),
    )


def _relationship(rel: dict[str, Any], dialect: Dialect) -> Relationship:
    return Relationship.model_construct(
        id=rel["id"],
        source=rel["source"],
        target=rel["target"],
        type=rel["type"],
        properties=cypher.decode_properties(dialect, rel["properties"]),
        created_at=from_epoch_us(rel["created_at"]),
        valid_from=None if rel["valid_from"] is None else from_epoch_us(rel["valid_from"]),
        valid_to=None if rel["valid_to"] is None else from_epoch_us(rel["valid_to"]),
    )


def _join(
    meet: str,
    back_f: dict[str, tuple[str, dict] | None],
    back_b: dict[str, tuple[str, dict] | None],
    dialect: Dialect,
) -> PathResult:
    path, rels = [meet], []
    node = meet
    while (step := back_f[node]) is not None:
        node, rel = step
        path.append(node)
        rels.append(rel)
    path.reverse()
    rels.reverse()
    node = meet
    while (step := back_b[node]) is not None:
        node, rel = step
        path.append(node)
        rels.append(rel)
    return PathResult(path=path, relationships=[_relationship(rel, dialect) for rel in rels])
