"""The HTTP API (FastAPI on Ray Serve): memories and search across tiers, keys, metrics, the
knowledge graph, health.

No `from __future__ import annotations` here: FastAPI must see real types in the signatures of a
class that Serve ships to its replicas by value.
"""

import asyncio
import time
from collections import Counter
from typing import Annotated, Any

import numpy as np
import ray
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors import supervisor
from actors.tiers import TierHandles
from akasha_ray import config, self_metrics
from akasha_ray.auth import Principal, hash_key
from akasha_ray.embedding import normalize
from akasha_ray.errors import AkashaError, Forbidden, NotFound, Unauthenticated, Unavailable
from akasha_ray.graph.models import (
    MAX_DEPTH,
    MAX_HOPS,
    MIN_HOPS,
    EntitiesRequest,
    Entity,
    EntityId,
    Neighborhood,
    PathResult,
    RelationshipsRequest,
    check_types,
)
from akasha_ray.models import (
    IngestRequest,
    IngestResponse,
    KeyRequest,
    KeyResponse,
    Memory,
    SearchHit,
    SearchRequest,
    SearchResponse,
    TierReport,
    UtcDatetime,
    now_utc,
)
from akasha_ray.records import build_batch
from akasha_ray.search import ask_tiers, merge_hits
from akasha_ray.timeseries import MetricsQuery, PointBatch, QueryResponse
from akasha_ray.timeseries.models import WritePointsRequest

TIER_SIZES_EVERY_S = 60  # how often an ingest also samples per-system tier sizes
# A pass that runs longer goes on in the migrator; `akasha migrate` waits as long as it takes.
MIGRATE_TIMEOUT_S = 600

app = FastAPI(
    title="Akasha",
    version="0.1.0",
    description="Memory for fleets of AI systems: ingest, semantic search, keys.",
)


@app.exception_handler(AkashaError)
async def _akasha_error(request: Request, exc: AkashaError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content=exc.to_dict())


Authorization = Header(None, description="Bearer <API key>")


# Module helpers sit above the deployment class: Serve pickles the class with the globals
# defined at that point.
async def _awaitable(ref):
    return await ref


def _tier_summary(tier: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    oldest = [p["oldest"] for p in parts if p.get("oldest") is not None]
    newest = [p["newest"] for p in parts if p.get("newest") is not None]
    sizes = [p.get("bytes") for p in parts]
    return {
        "tier": tier,
        "count": sum(p["count"] for p in parts),
        "oldest": min(oldest) if oldest else None,
        "newest": max(newest) if newest else None,
        "bytes": None if None in sizes else sum(sizes),
    }


def _plain(report: dict[str, Any]) -> dict[str, Any]:
    """Scalars only, for /healthz."""
    return {k: v for k, v in report.items() if isinstance(v, str | int | float | bool)}


def _types(types: str | None) -> tuple[str, ...] | None:
    """`types=A,B` as a checked tuple (a bad name is a 422 naming `types`)."""
    return None if types is None else check_types(types.split(","), "types")


def _hit_fields(hit: dict[str, Any]) -> dict[str, Any]:
    return {key: hit[key] for key in SearchHit.model_fields}


@serve.deployment(name="api")
@serve.ingress(app)
class AkashaAPI:
    def __init__(self, embedder: DeploymentHandle, settings: dict[str, Any]) -> None:
        self._settings = config.from_dict(settings)
        self._embedder = embedder
        self._tiers = TierHandles(self._settings)
        self._shards = self._tiers.shards
        self._keys = supervisor.keys(self._settings)
        self._timeseries = supervisor.timeseries(self._settings)
        self._graph = supervisor.graph(self._settings)
        self._sizes_sampled_at = 0.0
        admin = self._settings.admin_key
        # Under `serve run` nothing else has bootstrapped the admin key: make sure one exists.
        ray.get(self._keys.ensure_admin.remote(admin.get_secret_value() if admin else None))
        self._principals: dict[str, Principal] = {}  # verified keys; keys are never revoked yet
        self._timeout = self._settings.serve.request_timeout_s
        self._model_info: dict[str, str] | None = None

    # -- auth ---------------------------------------------------------------------------------

    async def _principal(self, authorization: str | None) -> Principal:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("send Authorization: Bearer <API key>")
        key_hash = hash_key(key.strip())
        principal = self._principals.get(key_hash)
        if principal is None:
            found = await self._call(self._keys.principal.remote(key_hash), "keys")
            if found is None:
                raise Unauthenticated("unknown API key")
            principal = self._principals[key_hash] = Principal.from_dict(found)
        return principal

    async def _call(self, ref, component: str, timeout_s: float | None = None):
        timeout_s = timeout_s or self._timeout
        try:
            return await asyncio.wait_for(ref, timeout_s)
        except TimeoutError as exc:
            raise Unavailable(f"{component} did not answer within {timeout_s} s") from exc
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, AkashaError):  # e.g. NotFound raised by the store: its status
                raise exc.cause from None
            raise
        except ray.exceptions.RayActorError as exc:
            raise Unavailable(f"{component} is not available (restarting?)") from exc

    # -- routes -------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        names = [f"hot-{i}" for i in range(len(self._shards))]
        checks = [shard.stats.remote() for shard in self._shards]
        checks += [
            self._embedder.model.remote(),
            self._keys.data_dir.remote(),
            self._timeseries.health.remote(),
            self._graph.ready.remote(),
            self._tiers.warm.health.remote(),
            self._tiers.cold.existing.remote([]),
            self._tiers.migrator.status.remote(),
        ]
        results = await asyncio.gather(
            *(asyncio.wait_for(_awaitable(c), 5) for c in checks), return_exceptions=True
        )
        components: dict[str, Any] = {}
        components_named = [
            *names,
            "embedder",
            "keys",
            "timeseries",
            "graph",
            "warm",
            "cold",
            "migrator",
        ]
        for name, result in zip(components_named, results, strict=True):
            if isinstance(result, BaseException):
                components[name] = {"status": "down", "error": type(result).__name__}
            elif name.startswith("hot-"):
                components[name] = {"status": "ok", "memories": result["count"]}
            elif name == "embedder":
                components[name] = {"status": "ok", **result}
            elif name == "timeseries":
                components[name] = {"status": "ok", "flavour": result["flavour"]}
            elif name == "graph":
                components[name] = {"status": "ok", "backend": result}
            elif name == "warm":
                ok = result.get("reachable") and result.get("loaded", True)
                components[name] = {"status": "ok" if ok else "down", **_plain(result)}
            elif name == "migrator":
                last = result["last_pass"] or {}
                components[name] = {
                    "status": "failing" if "error" in last else "ok",
                    "hot_window_days": result["hot_window"]["days"],
                    **({"error": last["error"]} if "error" in last else {}),
                }
            else:
                components[name] = {"status": "ok"}
        healthy = all(c["status"] == "ok" for c in components.values())
        return {"status": "ok" if healthy else "degraded", "components": components}

    @app.post("/v1/memories", status_code=201, response_model=IngestResponse)
    async def ingest(
        self, body: IngestRequest, authorization: str | None = Authorization
    ) -> IngestResponse:
        principal = await self._principal(authorization)
        principal.require("write")
        principal.require_systems([m.system_id for m in body.memories], "memories.system_id")
        texts = [m.content for m in body.memories]
        vectors, model = await asyncio.gather(
            self._embedder.embed_documents.remote(texts), self._model()
        )
        now = now_utc()
        batch = build_batch(body.memories, vectors, now=now, **model)
        systems = batch.column("system_id").to_pylist()
        stored = await self._call(self._tiers.insert(batch, now), "tiers")
        ids = batch.column("id").to_pylist()
        links = [
            self._graph.link_memories.remote(memory_id, m.entities)
            for memory_id, m in zip(ids, body.memories, strict=True)
            if m.entities
        ]
        if links:
            await self._call(asyncio.gather(*links), "graph")
        system_of = dict(zip(ids, systems, strict=True))
        new = Counter(system_of[memory_id] for memory_id in stored)
        self._record(self_metrics.ingested(new, now_utc()))
        await self._sample_tier_sizes()
        return IngestResponse(ids=ids)

    @app.post("/v1/search", response_model=SearchResponse)
    async def search(
        self, body: SearchRequest, authorization: str | None = Authorization
    ) -> SearchResponse:
        principal = await self._principal(authorization)
        principal.require("read")
        system_ids = body.system_ids
        if system_ids is not None:
            principal.require_systems(system_ids, "system_ids")
        elif not principal.admin:
            system_ids = sorted(principal.system_ids)
        if body.query is not None:
            vector = await self._embedder.embed_query.remote(body.query)
        else:
            vector = normalize(np.asarray(body.vector, dtype=np.float32))
        only_ids = None
        if body.entity_id is not None:
            only_ids = await self._call(self._graph.entity_memories.remote(body.entity_id), "graph")
        asked = await self._tiers.plan(body.start, now_utc(), body.include_cold)
        if only_ids is not None:
            asked = ["hot"]  # the id filter reaches the hot index only (see README)
        query = (vector, body.limit, system_ids, body.start, body.end)
        calls = {
            tier: (
                (lambda: self._tiers.search_hot(*query, only_ids))
                if tier == "hot"
                else (lambda tier=tier: self._tiers.search_other(tier, *query))
            )
            for tier in asked
        }
        answers = await ask_tiers(calls, self._timeout)
        hits = merge_hits((a.hits for a in answers.values()), body.limit)
        tiers = [
            TierReport(tier=t, latency_ms=a.latency_ms, hits=len(a.hits), error=a.error)
            for t, a in answers.items()
        ]
        self._record(self_metrics.searched(system_ids, tiers, now_utc()))
        return SearchResponse(
            results=[SearchHit(**_hit_fields(h)) for h in hits],
            tiers=tiers,
            partial=any(t.error for t in tiers),
        )

    @app.get("/v1/memories/{memory_id}", response_model=Memory)
    async def get_memory(self, memory_id: str, authorization: str | None = Authorization) -> Memory:
        principal = await self._principal(authorization)
        principal.require("read")
        _, tier, row = (await self._find(memory_id, principal))[0]
        return Memory(tier=tier, **row)

    @app.delete("/v1/memories/{memory_id}", status_code=204)
    async def delete_memory(
        self, memory_id: str, authorization: str | None = Authorization
    ) -> Response:
        principal = await self._principal(authorization)
        principal.require("write")
        copies = await self._find(memory_id, principal)
        deletes = [owner.delete_many.remote([memory_id]) for owner, _, _ in copies]
        await self._call(asyncio.gather(*deletes), "tiers")
        await self._call(self._graph.unlink_memory.remote(memory_id), "graph")
        return Response(status_code=204)

    @app.post("/v1/keys", status_code=201, response_model=KeyResponse)
    async def create_key(
        self, body: KeyRequest, authorization: str | None = Authorization
    ) -> KeyResponse:
        principal = await self._principal(authorization)
        principal.require_admin()
        key = await self._call(self._keys.create.remote(body.system_ids, body.scopes), "keys")
        return KeyResponse(
            key=key, system_ids=sorted(set(body.system_ids)), scopes=sorted(set(body.scopes))
        )

    @app.post("/v1/metrics", status_code=202)
    async def write_metrics(
        self, body: WritePointsRequest, authorization: str | None = Authorization
    ) -> dict[str, int]:
        principal = await self._principal(authorization)
        principal.require("write")
        principal.require_systems([p.system_id for p in body.points], "points.system_id")
        batch = PointBatch.from_points(body.points)
        await self._call(self._timeseries.write.remote(batch), "timeseries")
        return {"accepted": len(batch)}

    @app.get("/v1/metrics/query", response_model=QueryResponse)
    async def query_metrics(
        self,
        query: Annotated[MetricsQuery, Query()],
        authorization: str | None = Authorization,
    ) -> QueryResponse:
        principal = await self._principal(authorization)
        principal.require("read")
        if query.system_id is None:
            if not principal.admin:
                raise Forbidden("a scoped key must name a system_id", field="system_id")
        else:
            principal.require_systems([query.system_id], "system_id")
        buckets = await self._call(self._timeseries.query.remote(query), "timeseries")
        return QueryResponse(buckets=buckets)

    # -- knowledge graph: shared by every system; read and write scopes apply ------------------

    @app.post("/v1/graph/entities", status_code=201)
    async def upsert_entities(
        self, body: EntitiesRequest, authorization: str | None = Authorization
    ) -> dict[str, int]:
        (await self._principal(authorization)).require("write")
        count = await self._call(self._graph.upsert_entities.remote(body.entities), "graph")
        return {"upserted": count}

    @app.post("/v1/graph/relationships", status_code=201)
    async def upsert_relationships(
        self, body: RelationshipsRequest, authorization: str | None = Authorization
    ) -> dict[str, int]:
        (await self._principal(authorization)).require("write")
        call = self._graph.upsert_relationships.remote(body.relationships)
        return {"upserted": await self._call(call, "graph")}

    @app.get("/v1/graph/entities/{entity_id}", response_model=Entity)
    async def get_entity(
        self, entity_id: EntityId, authorization: str | None = Authorization
    ) -> Entity:
        (await self._principal(authorization)).require("read")
        entity = await self._call(self._graph.get_entity.remote(entity_id), "graph")
        if entity is None:
            raise NotFound(f"no entity {entity_id!r}")
        return entity

    @app.delete("/v1/graph/entities/{entity_id}", status_code=204)
    async def delete_entity(
        self, entity_id: EntityId, authorization: str | None = Authorization
    ) -> Response:
        (await self._principal(authorization)).require("write")
        if not await self._call(self._graph.delete_entity.remote(entity_id), "graph"):
            raise NotFound(f"no entity {entity_id!r}")
        return Response(status_code=204)

    @app.get("/v1/graph/entities/{entity_id}/neighbors", response_model=Neighborhood)
    async def neighbors(
        self,
        entity_id: EntityId,
        depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 1,
        types: Annotated[str | None, Query(description="Comma-separated types.")] = None,
        as_of: Annotated[UtcDatetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        authorization: str | None = Authorization,
    ) -> Neighborhood:
        (await self._principal(authorization)).require("read")
        call = self._graph.neighbors.remote(entity_id, depth, _types(types), as_of, limit)
        return await self._call(call, "graph")

    @app.get("/v1/graph/path", response_model=PathResult)
    async def path(
        self,
        source: EntityId,
        target: EntityId,
        max_hops: Annotated[int, Query(ge=MIN_HOPS, le=MAX_HOPS)] = 5,
        types: Annotated[str | None, Query(description="Comma-separated types.")] = None,
        as_of: Annotated[UtcDatetime | None, Query()] = None,
        directed: bool = False,
        authorization: str | None = Authorization,
    ) -> PathResult:
        (await self._principal(authorization)).require("read")
        call = self._graph.shortest_path.remote(
            source, target, max_hops, _types(types), as_of, directed
        )
        return await self._call(call, "graph")

    @app.get("/v1/graph/entities/{entity_id}/memories")
    async def entity_memories(
        self, entity_id: EntityId, authorization: str | None = Authorization
    ) -> dict[str, list[Memory]]:
        principal = await self._principal(authorization)
        principal.require("read")
        ids = await self._call(self._graph.entity_memories.remote(entity_id), "graph")
        rows = await self._call(
            asyncio.gather(*(s.get_many.remote(ids) for s in self._shards)), "hot shards"
        )
        visible = [r for part in rows for r in part if principal.may_see(r["system_id"])]
        visible.sort(key=lambda r: (r["created_at"], r["id"]))
        return {"memories": [Memory(tier="hot", **r) for r in visible]}

    @app.get("/v1/tiers")
    async def tiers(self, authorization: str | None = Authorization) -> dict[str, Any]:
        """Per tier: how many memories, the oldest and newest, bytes on disk (None: unknown); the
        hot window in force and the last migration pass."""
        (await self._principal(authorization)).require("read")
        hot, warm, cold, migration = await self._call(
            asyncio.gather(
                asyncio.gather(*(s.stats.remote() for s in self._shards)),
                _awaitable(self._tiers.warm.stats.remote()),
                _awaitable(self._tiers.cold.stats.remote()),
                _awaitable(self._tiers.migrator.status.remote()),
            ),
            "tiers",
        )
        return {
            "tiers": [
                _tier_summary("hot", hot),
                _tier_summary("warm", [warm]),
                _tier_summary("cold", [cold]),
            ],
            "migration": migration,
        }

    @app.post("/v1/tiers/migrate")
    async def migrate(self, authorization: str | None = Authorization) -> dict[str, Any]:
        """A migration pass now (admin), after any pass already running: it adapts the hot window,
        then moves what has aged out. Returns the window in force and the counts per hop."""
        (await self._principal(authorization)).require_admin()
        pass_ = _awaitable(self._tiers.migrator.migrate.remote())
        return await self._call(pass_, "migrator", MIGRATE_TIMEOUT_S)

    @app.get("/v1/stats")
    async def stats(self, authorization: str | None = Authorization) -> dict[str, Any]:
        principal = await self._principal(authorization)
        principal.require_admin()
        shards = await self._call(
            asyncio.gather(*(s.stats.remote() for s in self._shards)), "hot shards"
        )
        return {"hot": [{"shard": i, **s} for i, s in enumerate(shards)]}

    # -- helpers ------------------------------------------------------------------------------

    async def _find(self, memory_id: str, principal: Principal):
        """Every copy of a memory this principal may see, in any tier; 404 otherwise."""
        copies = await self._call(self._tiers.find(memory_id), "tiers")
        visible = [c for c in copies if principal.may_see(c[2]["system_id"])]
        if not visible:
            raise NotFound(f"no memory {memory_id!r}")
        return visible

    def _record(self, points: list) -> None:
        """Write Akasha's own metrics without making the request wait for (or fail on) them."""
        if points:
            self._timeseries.write.remote(PointBatch.from_points(points))

    async def _sample_tier_sizes(self) -> None:
        if time.monotonic() - self._sizes_sampled_at < TIER_SIZES_EVERY_S:
            return
        self._sizes_sampled_at = time.monotonic()
        counts = await self._call(
            asyncio.gather(*(s.system_counts.remote() for s in self._shards)), "hot shards"
        )
        merged = {system: n for part in counts for system, n in part.items()}
        self._record(self_metrics.tier_sizes("hot", merged, now_utc()))

    async def _model(self) -> dict[str, str]:
        if self._model_info is None:
            info = await self._embedder.model.remote()
            self._model_info = {"model": info["model"], "model_revision": info["revision"]}
        return self._model_info
