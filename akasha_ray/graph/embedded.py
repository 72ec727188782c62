"""The embedded graph, synchronously: tables in one DuckDB file plus the CSR adjacency built from
them, kept in step on every write. `akasha_ray.graph.duckdb_store` is its async face.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from akasha_ray.errors import NotFound
from akasha_ray.graph import duckdb_sql as sql
from akasha_ray.graph.csr import OPEN_HIGH, OPEN_LOW, Adjacency, EdgeColumns, EdgeFilter
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
    decode_properties,
    encode_properties,
    from_epoch_us,
    relationship_id_us,
)

_UTC_US = pa.timestamp("us", tz="UTC")


def entity_key(entity_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=8).digest(), "big")


def relationship_key(relationship_id: str) -> int:
    return int(relationship_id[:16], 16)


def _last_by_id(items: Sequence[Entity] | Sequence[Relationship]) -> list:
    """Last write wins within a batch (one statement may not touch a row twice)."""
    return list({item.id: item for item in items}.values())


def _properties_text(properties: dict[str, Any]) -> str:
    return encode_properties(properties) if properties else "{}"  # the common case, fast


def _epoch_column(values: list[datetime | None]) -> pa.Array:
    return pa.array(values, _UTC_US)


class EmbeddedGraph:
    """The graph tables plus the adjacency built from them, kept in step on every write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._con = duckdb.connect(str(path))
        for statement in sql.SCHEMA:
            self._con.execute(statement)
        self._rebuilds = 0
        self._last_rebuild_s = 0.0
        self._rebuild()

    # -- adjacency upkeep ----------------------------------------------------------------------

    def _rebuild(self) -> None:
        started = time.perf_counter()
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            ids = [row[0] for row in con.execute(sql.ENTITY_IDS_IN_ORDER).fetchall()]
            types = [row[0] for row in con.execute(sql.TYPES_IN_ORDER).fetchall()]
            edges = con.execute(
                sql.EDGES_FOR_ADJACENCY, {"open_low": OPEN_LOW, "open_high": OPEN_HIGH}
            ).fetch_arrow_table()
        finally:
            con.execute("COMMIT")
        self._ids: list[str] = ids
        self._index: dict[str, int] = {entity_id: n for n, entity_id in enumerate(ids)}
        self._type_names: list[str] = types
        self._type_codes: dict[str, int] = {name: code for code, name in enumerate(types)}
        cols = EdgeColumns.of(
            *(edges[f].to_numpy() for f in ("src", "dst", "etype", "vf", "vt", "created"))
        )
        self._adjacency = Adjacency(len(ids), cols, edges["properties"].combine_chunks())
        self._stale = False
        self._rebuilds += 1
        self._last_rebuild_s = time.perf_counter() - started

    @property
    def adjacency_fresh(self) -> bool:
        """True when a path query needs no rebuild, so it touches no database."""
        return not (self._stale or self._adjacency.needs_rebuild)

    def _fresh(self) -> Adjacency:
        if not self.adjacency_fresh:
            self._rebuild()
        return self._adjacency

    def _type_code(self, name: str) -> int:
        code = self._type_codes.get(name)
        if code is None:
            code = self._type_codes[name] = len(self._type_names)
            self._type_names.append(name)
        return code

    def _filter(self, types: tuple[str, ...] | None, as_of: int | None) -> EdgeFilter:
        allowed = None
        if types is not None:
            allowed = np.zeros(len(self._type_names), bool)
            for name in types:
                code = self._type_codes.get(name)
                if code is not None:
                    allowed[code] = True
        return EdgeFilter(allowed=allowed, as_of=as_of)

    def _node(self, entity_id: str, field: str) -> int:
        node = self._index.get(check_entity_id(entity_id, field))
        if node is None:
            raise NotFound(f"no entity {entity_id!r}", field=field)
        return node

    def _write(self, statements: Sequence[tuple[str, Any]], batch: pa.Table | None = None) -> None:
        con = self._con
        if batch is not None:
            con.register("batch", batch)
        con.execute("BEGIN TRANSACTION")
        try:
            for statement, params in statements:
                con.execute(statement, params)
            con.execute("COMMIT")
        except duckdb.Error:
            con.execute("ROLLBACK")
            raise
        finally:
            if batch is not None:
                con.unregister("batch")

    # -- writes ---------------------------------------------------------------------------------

    def upsert_entities(self, entities: Sequence[Entity]) -> int:
        rows = _last_by_id(entities)
        if not rows:
            return 0
        check_types({e.type for e in rows}, "entities")  # models may come unvalidated
        batch = pa.table(
            {
                "key": pa.array([entity_key(e.id) for e in rows], pa.uint64()),
                "id": [e.id for e in rows],
                "type": [e.type for e in rows],
                "properties": [_properties_text(e.properties) for e in rows],
            }
        )
        existing = any(e.id in self._index for e in rows)
        statements = [(sql.DELETE_ENTITIES_IN_BATCH, None)] if existing else []
        self._write([*statements, (sql.INSERT_ENTITIES, None)], batch)
        for entity in rows:
            if entity.id not in self._index:
                self._index[entity.id] = len(self._ids)
                self._ids.append(entity.id)
        self._adjacency.grow(len(self._ids))
        return len(rows)

    def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        rows = _last_by_id(relationships)
        if not rows:
            return 0
        check_types({r.type for r in rows}, "relationships")  # models may come unvalidated
        ends = {r.source for r in rows} | {r.target for r in rows}
        missing = sorted(end for end in ends if end not in self._index)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise NotFound(
                f"{len(missing)} relationship end(s) are not entities: {shown}",
                field="relationships",
            )
        batch = pa.table(
            {
                "key": pa.array([relationship_key(r.id) for r in rows], pa.uint64()),
                "id": [r.id for r in rows],
                "source": [r.source for r in rows],
                "target": [r.target for r in rows],
                "type": [r.type for r in rows],
                "properties": [_properties_text(r.properties) for r in rows],
                "created_at": _epoch_column([r.created_at for r in rows]),
                "valid_from": _epoch_column([r.valid_from for r in rows]),
                "valid_to": _epoch_column([r.valid_to for r in rows]),
            }
        )
        adjacency = self._adjacency
        if self._stale or batch.num_rows > adjacency.rebuild_allowance:
            # Bulk: DuckDB finds the rows to replace; the adjacency is rebuilt on the next read.
            self._write(
                [(sql.DELETE_RELATIONSHIPS_IN_BATCH, None), (sql.INSERT_RELATIONSHIPS, None)],
                batch,
            )
            self._stale = True
            return len(rows)
        edges = self._edge_columns(batch)
        replaced = [
            adjacency.find_edge(int(src), int(dst), int(etype), int(vf))
            for src, dst, etype, vf in zip(edges.src, edges.dst, edges.etype, edges.vf, strict=True)
        ]
        known = [edge for edge in replaced if edge is not None]
        deletes = [(sql.DELETE_RELATIONSHIPS_IN_BATCH, None)] if known else []
        self._write([*deletes, (sql.INSERT_RELATIONSHIPS, None)], batch)
        for edge in known:  # an update: the new version joins the overlay
            adjacency.kill_edge(edge)
        adjacency.add_edges(edges, batch["properties"].to_pylist())
        return len(rows)

    def _edge_columns(self, batch: pa.Table) -> EdgeColumns:
        def micros(column: str, absent: int) -> np.ndarray:
            return batch[column].cast(pa.int64()).fill_null(absent).to_numpy()

        return EdgeColumns.of(
            [self._index[s] for s in batch["source"].to_pylist()],
            [self._index[t] for t in batch["target"].to_pylist()],
            [self._type_code(name) for name in batch["type"].to_pylist()],
            micros("valid_from", OPEN_LOW),
            micros("valid_to", OPEN_HIGH),
            micros("created_at", 0),
        )

    def delete_entity(self, entity_id: str) -> bool:
        node = self._index.get(check_entity_id(entity_id))
        if node is None:
            return False
        params = {"key": entity_key(entity_id), "id": entity_id}
        self._write(
            [
                (sql.DELETE_ENTITY_RELATIONSHIPS, {"id": entity_id}),
                (sql.DELETE_ENTITY, params),
                (sql.DELETE_ENTITY_LINKS, params),
            ]
        )
        self._adjacency.remove_node_edges(node)
        del self._index[entity_id]  # its number stays unused until the next rebuild
        return True

    def link_memories(self, memory_id: str, entity_ids: Sequence[str]) -> int:
        check_memory_id(memory_id)
        wanted = sorted({check_entity_id(e, "entity_ids") for e in entity_ids})
        if not wanted:
            return 0
        keys = [entity_key(e) for e in wanted]
        linked = {
            row[0]
            for row in self._con.execute(
                sql.SELECT_LINKED_ENTITIES, {"keys": keys, "memory_id": memory_id}
            ).fetchall()
        }
        fresh = [(k, e) for k, e in zip(keys, wanted, strict=True) if e not in linked]
        if not fresh:
            return 0
        batch = pa.table(
            {
                "entity_key": pa.array([k for k, _ in fresh], pa.uint64()),
                "entity_id": [e for _, e in fresh],
                "memory_id": [memory_id] * len(fresh),
            }
        )
        self._write([(sql.INSERT_LINKS, None)], batch)
        return len(fresh)

    def unlink_memory(self, memory_id: str) -> int:
        check_memory_id(memory_id)
        return self._con.execute(sql.DELETE_MEMORY_LINKS, {"memory_id": memory_id}).fetchone()[0]

    # -- reads ----------------------------------------------------------------------------------

    def get_entity(self, entity_id: str) -> Entity | None:
        check_entity_id(entity_id)
        row = self._con.execute(
            sql.SELECT_ENTITY, {"key": entity_key(entity_id), "id": entity_id}
        ).fetchone()
        return None if row is None else _entity(row)

    def entity_memories(self, entity_id: str) -> list[str]:
        check_entity_id(entity_id)
        rows = self._con.execute(
            sql.SELECT_ENTITY_MEMORIES, {"key": entity_key(entity_id), "id": entity_id}
        ).fetchall()
        return [row[0] for row in rows]

    def shortest_path(
        self,
        source: str,
        target: str,
        max_hops: int = DEFAULT_HOPS,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        directed: bool = False,
    ) -> PathResult:
        hops = check_bounded_int(max_hops, MIN_HOPS, MAX_HOPS, "max_hops")
        flt = self._filter(check_types(types), check_as_of(as_of))
        adjacency = self._fresh()
        found = adjacency.shortest_path(
            self._node(source, "source"), self._node(target, "target"), hops, flt, bool(directed)
        )
        if found is None:
            return PathResult.model_construct(path=None, relationships=[])
        nodes, edges = found
        # Built from validated rows: model_construct skips re-running their validators.
        return PathResult.model_construct(
            path=[self._ids[n] for n in nodes],
            relationships=self._relationships(adjacency, np.asarray(edges, np.int64)),
        )

    def neighbors(
        self,
        entity_id: str,
        depth: int = 1,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        limit: int = 1000,
    ) -> Neighborhood:
        depth = check_bounded_int(depth, 1, MAX_DEPTH, "depth")
        limit = check_bounded_int(limit, 1, MAX_NEIGHBORS, "limit")
        flt = self._filter(check_types(types), check_as_of(as_of))
        adjacency = self._fresh()
        center = self._node(entity_id, "id")
        nodes, depths, edges = adjacency.levels(center, depth, flt)
        ranked = sorted(
            zip(depths.tolist(), (self._ids[n] for n in nodes), nodes.tolist(), strict=True)
        )
        kept = ranked[:limit]
        entities = self._entities([entity for _, entity, _ in kept])
        kept_nodes = np.asarray([center] + [n for _, _, n in kept], np.int64)
        cols = adjacency.columns(edges)
        inside = np.isin(cols.src, kept_nodes) & np.isin(cols.dst, kept_nodes)
        return Neighborhood.model_construct(
            center=entity_id,
            neighbors=[Neighbor.model_construct(entity=entities[e], depth=d) for d, e, _ in kept],
            relationships=sorted(self._relationships(adjacency, edges[inside]), key=lambda r: r.id),
            truncated=len(ranked) > limit,
        )

    def _entities(self, ids: list[str]) -> dict[str, Entity]:
        if not ids:
            return {}
        rows = self._con.execute(
            sql.SELECT_ENTITIES_BY_KEYS, {"keys": [entity_key(e) for e in ids]}
        ).fetchall()
        wanted = set(ids)
        return {row[0]: _entity(row) for row in rows if row[0] in wanted}

    def _relationships(self, adjacency: Adjacency, edges: np.ndarray) -> list[Relationship]:
        """The relationships of the given edges, in their order, from the adjacency alone."""
        if not edges.size:
            return []
        cols = adjacency.columns(edges)
        found = []
        for i, properties in enumerate(adjacency.properties(edges)):
            source, target = self._ids[cols.src[i]], self._ids[cols.dst[i]]
            rel_type = self._type_names[cols.etype[i]]
            vf, vt = int(cols.vf[i]), int(cols.vt[i])
            valid_from = None if vf == OPEN_LOW else vf
            # Built from our own validated rows: skip a second validation on the hot path.
            found.append(
                Relationship.model_construct(
                    id=relationship_id_us(source, rel_type, target, valid_from),
                    source=source,
                    target=target,
                    type=rel_type,
                    properties=decode_properties(properties),
                    created_at=from_epoch_us(int(cols.created[i])),
                    valid_from=None if valid_from is None else from_epoch_us(valid_from),
                    valid_to=None if vt == OPEN_HIGH else from_epoch_us(vt),
                )
            )
        return found

    def stats(self) -> GraphStats:
        entities, relationships, links = self._con.execute(sql.COUNTS).fetchone()
        return GraphStats(
            backend="duckdb",
            entities=entities,
            relationships=relationships,
            memory_links=links,
            details={
                "path": str(self._path),
                "adjacency_nodes": self._adjacency.n_nodes,
                "adjacency_edges": self._adjacency.edge_count,
                "overlay_edges": self._adjacency.overlay_size,
                "stale": self._stale,
                "rebuilds": self._rebuilds,
                "last_rebuild_s": round(self._last_rebuild_s, 4),
            },
        )

    def close(self) -> None:
        self._con.close()


def _entity(row: tuple[Any, ...]) -> Entity:
    # Rows were validated on the way in; skip a second validation on the hot read path.
    return Entity.model_construct(id=row[0], type=row[1], properties=decode_properties(row[2]))
