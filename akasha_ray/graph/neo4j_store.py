"""Scale graph store: Neo4j 5 through the official driver's AsyncGraphDatabase.

One long-lived driver per store (the `graph` actor owns it); every call is a managed transaction
(`execute_read` / `execute_write`), which the driver retries on transient faults. The Cypher lives
in `akasha_ray.graph.cypher`. Entities are `(:Entity {key, system_id, id, type, properties})`
nodes, keyed by `<owner>/<id>`, with their properties as JSON text (Neo4j properties cannot hold
maps; base64 on FalkorDB, see `cypher`); relationships carry their id, owner, JSON properties and
times as epoch microseconds; memory links are `(:MemoryMention {memory_key, system_id,
entity_id})` nodes apart from the entity graph.

Paths and neighbourhoods are a BFS driven from here, one `expand` query per level, so that they
cross only visible owners and stop at the frontier cap exactly as the embedded store does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j.exceptions import ClientError, ServiceUnavailable, SessionExpired

from akasha_ray.errors import NotFound, Unavailable
from akasha_ray.graph import cypher
from akasha_ray.graph.cypher import Dialect
from akasha_ray.graph.models import (
    DEFAULT_HOPS,
    DEFAULT_MAX_FRONTIER,
    DEFAULT_MEMORIES_PAGE,
    MAX_DEPTH,
    MAX_HOPS,
    MAX_MEMORIES_CALL,
    MAX_NEIGHBORS,
    MIN_HOPS,
    SHARED,
    Entity,
    GraphStats,
    Neighbor,
    Neighborhood,
    PathResult,
    Relationship,
    candidates,
    check_as_of,
    check_bounded_int,
    check_entity_id,
    check_links,
    check_memory_key,
    check_owner,
    check_system_id,
    check_systems,
    check_types,
    epoch_us,
    from_epoch_us,
    node_key,
    split_node,
    system_of,
    visible_owners,
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
        self,
        driver: AsyncDriver,
        dialect: Dialect,
        database: str | None,
        owns_driver: bool,
        max_frontier: int = DEFAULT_MAX_FRONTIER,
    ) -> None:
        self._driver = driver
        self.dialect = dialect
        self._database = database
        self._owns_driver = owns_driver
        self.max_frontier = check_bounded_int(max_frontier, 1, 2**31 - 1, "max_frontier")

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
        max_frontier: int = DEFAULT_MAX_FRONTIER,
    ) -> Neo4jGraphStore:
        # A short acquisition timeout bounds a stalled handshake (seen with FalkorDB), after
        # which the managed transaction retries on a fresh connection.
        driver = AsyncGraphDatabase.driver(
            uri,
            auth=(user, password or "") if user else None,
            connection_acquisition_timeout=acquisition_timeout_s,
        )
        try:
            return await cls.attach(
                driver,
                database=database,
                dialect=dialect,
                owns_driver=True,
                max_frontier=max_frontier,
            )
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
        max_frontier: int = DEFAULT_MAX_FRONTIER,
    ) -> Neo4jGraphStore:
        """A store over an existing driver (tests share one across many databases)."""
        store = cls(driver, dialect or Dialect.NEO4J5, database, owns_driver, max_frontier)
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
        else:
            present = {
                (row["label"], prop)
                for row in await self._read(cypher.FALKORDB_LIST_INDEXES)
                for prop in row["properties"]
            }
            for key, statement in cypher.FALKORDB_INDEXES.items():
                if key not in present:
                    await self._write(statement)
        versions = [row["version"] for row in await self._read(cypher.GET_SCHEMA_VERSION)]
        if max(versions, default=0) < cypher.SCHEMA_VERSION:
            await self._transaction([*cypher.LEGACY, cypher.SET_SCHEMA_VERSION], write=True)

    async def _entity_rows(self, keys: Sequence[str]) -> Rows:
        rows: Rows = []
        for chunk in cypher.param_chunks(self.dialect, list(keys)):
            rows += await self._read(cypher.GET_ENTITIES, keys=chunk)
        return rows

    async def _existing(self, keys: Sequence[str]) -> set[str]:
        return {row["key"] for row in await self._entity_rows(sorted(set(keys)))}

    async def _resolve(self, entity_id: str, system_id: str | None, field: str) -> str:
        """The node key of the system's entity of that id, else of the shared one."""
        check_entity_id(entity_id, field)
        keys = candidates(entity_id, system_id)
        existing = await self._existing(keys)
        for key in keys:
            if key in existing:
                return key
        raise NotFound(f"no entity {entity_id!r}", field=field)

    # -- writes ---------------------------------------------------------------------------------

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        if not entities:
            return 0
        check_types({e.type for e in entities}, "entities")  # models may come unvalidated
        rows = list(
            {
                e.node: {
                    "key": e.node,
                    "system_id": check_owner(e.system_id, "entities.system_id"),
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
        # A sent id is checked against its owner (see Relationship.owned_by).
        latest = {r.id: r.owned_by(r.system_id) for r in relationships}
        for r in latest.values():
            check_owner(r.system_id, "relationships.system_id")
        wanted = {
            k
            for r in latest.values()
            for end in (r.source, r.target)
            for k in candidates(end, r.system_id)
        }
        existing = await self._existing(sorted(wanted))
        missing: set[str] = set()
        by_type: dict[str, list[dict[str, Any]]] = {}
        moved: dict[str, list[dict[str, Any]]] = {}
        for r in latest.values():
            ends = []
            for end in (r.source, r.target):
                found = [k for k in candidates(end, r.system_id) if k in existing]
                if not found:
                    missing.add(end)
                ends.append(found)
            if missing:
                continue
            row = _relationship_row(r, ends[0][0], ends[1][0], self.dialect)
            by_type.setdefault(r.type, []).append(row)
            if len(ends[0]) > 1 or len(ends[1]) > 1:
                moved.setdefault(r.type, []).append(
                    {
                        "id": r.id,
                        "source": ends[0][0],
                        "target": ends[1][0],
                        "sources": ends[0],
                        "targets": ends[1],
                    }
                )
        if missing:
            shown = ", ".join(repr(m) for m in sorted(missing)[:5])
            raise NotFound(
                f"{len(missing)} relationship end(s) are not entities: {shown}",
                field="relationships",
            )
        for rel_type, rows in sorted(moved.items()):
            query = cypher.drop_moved_relationships(rel_type)
            for chunk in cypher.param_chunks(self.dialect, rows):
                await self._write(query, rows=chunk)
        for rel_type, rows in sorted(by_type.items()):
            query = cypher.upsert_relationships(rel_type)
            for chunk in cypher.param_chunks(self.dialect, rows):
                await self._write(query, rows=chunk)
        return len(latest)

    async def delete_entity(self, entity_id: str, system_id: str | None = None) -> bool:
        check_entity_id(entity_id)
        owner = check_owner(system_id)
        key = node_key(system_id, entity_id)

        async def delete(tx: AsyncManagedTransaction) -> bool:
            rows = await _data(tx, cypher.DELETE_ENTITY, {"key": key})
            if not rows[0]["deleted"]:
                return False
            if owner == SHARED:
                owners = [
                    r["system_id"] for r in await _data(tx, cypher.OWNERS_OF_ID, {"id": entity_id})
                ]
                params = {"id": entity_id, "owners": owners}
                await _data(tx, cypher.DELETE_SHARED_MENTIONS, params)
            else:
                params = {"id": entity_id, "system_id": owner}
                await _data(tx, cypher.DELETE_SYSTEM_MENTIONS, params)
            return True

        return await self._execute(delete, write=True)

    async def link_memories(self, links: Mapping[str, Sequence[str]]) -> int:
        wanted = check_links(links)
        if not wanted:
            return 0
        keys = sorted({key for key, _ in wanted})

        async def link(tx: AsyncManagedTransaction) -> int:
            linked = set()
            for chunk in cypher.param_chunks(self.dialect, keys):
                rows = await _data(tx, cypher.LINKS_OF_MEMORIES, {"keys": chunk})
                linked |= {(row["memory_key"], row["entity_id"]) for row in rows}
            fresh = [
                {"memory_key": key, "system_id": system_id, "entity_id": entity_id}
                for (key, entity_id), system_id in wanted.items()
                if (key, entity_id) not in linked
            ]
            for chunk in cypher.param_chunks(self.dialect, fresh):
                await _data(tx, cypher.CREATE_MENTIONS, {"rows": chunk})
            return len(fresh)

        return await self._execute(link, write=True)

    async def unlink_memory(self, key: str) -> int:
        check_memory_key(key)
        rows = await self._write(cypher.DELETE_MEMORY_MENTIONS, memory_key=key)
        return rows[0]["deleted"]

    # -- reads ----------------------------------------------------------------------------------

    async def get_entity(self, entity_id: str, system_id: str | None = None) -> Entity | None:
        check_entity_id(entity_id)
        if system_id is not None:
            check_system_id(system_id)
        keys = candidates(entity_id, system_id)
        rows = {row["key"]: row for row in await self._entity_rows(keys)}
        for key in keys:
            if key in rows:
                return _entity(rows[key], self.dialect)
        return None

    async def entity_memories(
        self,
        entity_id: str,
        systems: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = DEFAULT_MEMORIES_PAGE,
    ) -> tuple[list[str], str | None]:
        check_entity_id(entity_id)
        wanted = check_systems(systems)
        if after is not None:
            check_memory_key(after, "cursor")
        limit = check_bounded_int(limit, 1, MAX_MEMORIES_CALL, "limit")
        query = cypher.entity_memories(wanted is not None, after is not None, limit + 1)
        params: dict[str, Any] = {"id": entity_id}
        if wanted is not None:
            params["systems"] = wanted
        if after is not None:
            params["after"] = after
        rows = await self._read(query, **params)
        keys = [row["memory_key"] for row in rows[:limit]]
        return keys, (keys[-1] if len(rows) > limit else None)

    async def _expand(
        self,
        frontier: list[str],
        types: tuple[str, ...] | None,
        direction: str,
        moment: int | None,
        owners: frozenset[str] | None,
    ) -> Rows:
        query = cypher.expand(types, direction, moment is not None, owners is not None)
        params: dict[str, Any] = {}
        if moment is not None:
            params["as_of"] = moment
        if owners is not None:
            params["owners"] = sorted(owners)
        rows: Rows = []
        for chunk in cypher.param_chunks(self.dialect, frontier):
            rows += await self._read(query, frontier=chunk, **params)
        # Sorted so that ties resolve the same way on every run.
        return sorted(rows, key=lambda row: (row["to_key"], row["from_key"], row["rel"]["id"]))

    async def shortest_path(
        self,
        source: str,
        target: str,
        max_hops: int = DEFAULT_HOPS,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        directed: bool = False,
        *,
        system_id: str | None = None,
        visible: Sequence[str] | None = None,
    ) -> PathResult:
        check_entity_id(source, "source")
        check_entity_id(target, "target")
        hops = check_bounded_int(max_hops, MIN_HOPS, MAX_HOPS, "max_hops")
        wanted_types = check_types(types)
        moment = check_as_of(as_of)
        owners = visible_owners(visible)
        if system_id is not None:
            check_system_id(system_id)
        start = await self._resolve(source, system_id, "source")
        end = await self._resolve(target, system_id, "target")
        if start == end:
            owner, entity_id = split_node(start)
            return PathResult(path=[entity_id], relationships=[], systems=[owner])
        return await self._bfs_path(start, end, hops, wanted_types, moment, bool(directed), owners)

    async def _bfs_path(
        self,
        source: str,
        target: str,
        hops: int,
        types: tuple[str, ...] | None,
        moment: int | None,
        directed: bool,
        owners: frozenset[str] | None,
    ) -> PathResult:
        """Bidirectional BFS one query per level, as in the embedded store: the first level at
        which the searches touch gives a shortest path, each step grows the smaller frontier, and
        once both sides have reached more than the cap with levels left, it gives up."""
        back_f: dict[str, tuple[str, dict] | None] = {source: None}
        back_b: dict[str, tuple[str, dict] | None] = {target: None}
        front_f, front_b = [source], [target]
        for hop in range(hops):
            forward = len(front_f) <= len(front_b)
            direction = ("out" if forward else "in") if directed else "both"
            front, back, other = (front_f, back_f, back_b) if forward else (front_b, back_b, back_f)
            reached = []
            for row in await self._expand(front, types, direction, moment, owners):
                if row["to_key"] not in back:
                    back[row["to_key"]] = (row["from_key"], row["rel"])
                    reached.append(row["to_key"])
            if forward:
                front_f = reached
            else:
                front_b = reached
            meet = sorted(node for node in reached if node in other)
            if meet:
                return _join(meet[0], back_f, back_b, self.dialect)
            if not front_f or not front_b:
                break
            if len(back_f) + len(back_b) - 2 > self.max_frontier and hop < hops - 1:
                return PathResult(path=None, relationships=[], truncated=True)
        return PathResult(path=None, relationships=[])

    async def neighbors(
        self,
        entity_id: str,
        depth: int = 1,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        limit: int = 1000,
        *,
        system_id: str | None = None,
        visible: Sequence[str] | None = None,
    ) -> Neighborhood:
        check_entity_id(entity_id)
        depth = check_bounded_int(depth, 1, MAX_DEPTH, "depth")
        limit = check_bounded_int(limit, 1, MAX_NEIGHBORS, "limit")
        wanted_types = check_types(types)
        moment = check_as_of(as_of)
        owners = visible_owners(visible)
        if system_id is not None:
            check_system_id(system_id)
        center = await self._resolve(entity_id, system_id, "id")
        dist = {center: 0}
        crossed: dict[str, dict] = {}
        front = [center]
        stopped = False
        for level in range(1, depth + 1):
            reached = set()
            for row in await self._expand(front, wanted_types, "both", moment, owners):
                crossed[row["rel"]["id"]] = row["rel"]
                if row["to_key"] not in dist:
                    reached.add(row["to_key"])
            for node in reached:
                dist[node] = level
            front = sorted(reached)
            if not front:
                break
            if len(dist) - 1 > self.max_frontier and level < depth:
                stopped = True
                break
        # Nearest first, then by node key (owner, then id), as the embedded store ranks them.
        ranked = sorted((d, node) for node, d in dist.items() if d > 0)
        kept = ranked[:limit]
        kept_keys = {center} | {node for _, node in kept}
        rows = await self._entity_rows([node for _, node in kept])
        entities = {row["key"]: _entity(row, self.dialect) for row in rows}
        return Neighborhood(
            center=entity_id,
            neighbors=[Neighbor(entity=entities[node], depth=d) for d, node in kept],
            relationships=[
                _relationship(rel, self.dialect)
                for _, rel in sorted(crossed.items())
                if rel["source_key"] in kept_keys and rel["target_key"] in kept_keys
            ],
            truncated=len(ranked) > limit or stopped,
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
            details={
                "dialect": self.dialect.value,
                "database": self._database,
                "max_frontier": self.max_frontier,
            },
        )

    async def close(self) -> None:
        if self._owns_driver:
            await self._driver.close()


def _relationship_row(
    r: Relationship, source: str, target: str, dialect: Dialect
) -> dict[str, Any]:
    return {
        "id": r.id,
        "system_id": check_owner(r.system_id),
        "source": source,
        "target": target,
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
        system_id=system_of(row["system_id"]),
    )


def _relationship(rel: dict[str, Any], dialect: Dialect) -> Relationship:
    return Relationship.model_construct(
        id=rel["id"],
        system_id=system_of(rel["system_id"]),
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
    ends = [split_node(key) for key in path]
    return PathResult(
        path=[entity_id for _, entity_id in ends],
        relationships=[_relationship(rel, dialect) for rel in rels],
        systems=[owner for owner, _ in ends],
    )
