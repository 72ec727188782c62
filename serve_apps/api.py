"""The HTTP API (FastAPI on Ray Serve): memories and search across tiers, keys, metrics, the
knowledge graph, health.

No `from __future__ import annotations` here: FastAPI must see real types in the signatures of a
class that Serve ships to its replicas by value.
"""

import asyncio
from typing import Annotated, Any

import numpy as np
import ray
from fastapi import FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from actors import supervisor
from akasha_ray import config, observability
from akasha_ray.auth import KEY_ID_PATTERN, Principal, PrincipalCache, hash_key
from akasha_ray.embedding import normalize
from akasha_ray.errors import (
    AkashaError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from akasha_ray.graph import access
from akasha_ray.graph.models import (
    DEFAULT_MEMORIES_PAGE,
    MAX_DEPTH,
    MAX_HOPS,
    MAX_MEMORIES_PAGE,
    MIN_HOPS,
    EntitiesRequest,
    Entity,
    EntityId,
    Neighborhood,
    PathResult,
    RelationshipsRequest,
    check_types,
)
from akasha_ray.identity import memory_key
from akasha_ray.memories import MemoryService, call
from akasha_ray.models import (
    ErrorResponse,
    IngestRequest,
    IngestResponse,
    KeyList,
    KeyRequest,
    KeyResponse,
    Memory,
    MemoryId,
    Name,
    SearchHit,
    SearchRequest,
    SearchResponse,
    TierReport,
    UtcDatetime,
    now_utc,
)
from akasha_ray.records import build_batch
from akasha_ray.replication import changes
from akasha_ray.search import plan_hot
from akasha_ray.timeseries import MetricsQuery, PointBatch, QueryResponse
from akasha_ray.timeseries.models import WritePointsRequest
from serve_apps import dr as dr_routes
from serve_apps.admission import Admission, Limits, retry_after_header
from serve_apps.body_guard import BodyGuard

# A pass that runs longer goes on in the migrator; `akasha migrate` waits as long as it takes.
MIGRATE_TIMEOUT_S = 600

app = FastAPI(
    title="Akasha",
    version="0.1.0",
    description="Memory for fleets of AI systems: ingest, semantic search, keys.",
    # Declared for every route, so clients (and the schemathesis suite) know each error's shape.
    responses={
        code: {"model": ErrorResponse, "description": why}
        for code, why in {
            400: "Malformed request",
            401: "No or unknown API key",
            403: "The key may not do this",
            404: "Not found",
            409: "Conflict",
            503: "A component is down or timed out",
        }.items()
    },
)
app.add_middleware(BodyGuard)  # NaN, lone surrogates, deep nesting in any JSON body: a 422
app.add_middleware(Admission)  # requests at once, waiting, and a deadline: beyond, a 503 JSON
# Outermost: request id (logs, actor calls, X-Request-ID) and per-route metrics, 422s included.
app.add_middleware(observability.RequestMetrics)
app.include_router(dr_routes.router)  # /v1/dr/*: status, promote, handover, resume (admin)


@app.exception_handler(BackPressureError)
async def _backpressure(request: Request, exc: BackPressureError) -> JSONResponse:
    """The embedder's queue is full: a 503 to retry, in Akasha's error format."""
    return _retry_later(f"the embedder is busy ({exc.message}); retry")


@app.exception_handler(ray.exceptions.RayActorError)
async def _actor_died(request: Request, exc: ray.exceptions.RayActorError) -> JSONResponse:
    """A replica or actor died under a call not wrapped in `call` (the embedder's, found by
    `bench fleet` killing its replica: that was a 500): a 503 to retry while it restarts."""
    return _retry_later("a component is restarting; retry")


def _retry_later(message: str) -> JSONResponse:
    """A 503 in Akasha's error format, with the configured Retry-After."""
    retry = retry_after_header(Admission.limits.retry_after_s)
    return JSONResponse(
        status_code=503, content=Unavailable(message).to_dict(), headers={"Retry-After": retry}
    )


@app.exception_handler(AkashaError)
async def _akasha_error(request: Request, exc: AkashaError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content=exc.to_dict())


Authorization = Header(None, description="Bearer <API key>")


# Module helpers sit above the deployment class: Serve pickles the class with the globals
# defined at that point.
async def _awaitable(ref):
    return await ref


def _tier_summary(tier: str, parts: list[dict[str, Any]], with_bytes: bool) -> dict[str, Any]:
    oldest = [p["oldest"] for p in parts if p.get("oldest") is not None]
    newest = [p["newest"] for p in parts if p.get("newest") is not None]
    summary = {
        "tier": tier,
        "count": sum(p["count"] for p in parts),
        "oldest": min(oldest) if oldest else None,
        "newest": max(newest) if newest else None,
    }
    if with_bytes:  # the admin's only: sizes say something about every system
        sizes = [p.get("bytes") for p in parts]
        summary["bytes"] = None if None in sizes else sum(sizes)
    return summary


def _plain(report: dict[str, Any]) -> dict[str, Any]:
    """Scalars only, for /healthz."""
    return {k: v for k, v in report.items() if isinstance(v, str | int | float | bool)}


def _types(types: str | None) -> tuple[str, ...] | None:
    """`types=A,B` as a checked tuple (a bad name is a 422 naming `types`)."""
    return None if types is None else check_types(types.split(","), "types")


def _hit_fields(hit: dict[str, Any]) -> dict[str, Any]:
    return {key: hit[key] for key in SearchHit.model_fields}


# A memory is (system_id, id): routes that address one take the system, which may be left out
# when the key holds exactly one.
SystemParam = Annotated[
    Name | None,
    Query(description="The memory's system; optional when the key holds exactly one system."),
]
ENTITY_SEARCH_MEMORIES = 100_000  # memories of one entity an entity_id search filters by
# Graph reads name entities within a system; the admin's default is the shared graph.
GraphSystemParam = Annotated[
    Name | None,
    Query(
        description="The system whose entity the ids name (its own first, else a shared one); "
        "optional when the key holds exactly one system. For the admin: absent means shared."
    ),
]


def _system_of(principal: Principal, system_id: str | None) -> str:
    if system_id is None:
        if principal.admin or len(principal.system_ids) != 1:
            raise InvalidInput(
                "name the memory's system_id (this key holds more than one system)",
                field="system_id",
            )
        return next(iter(principal.system_ids))
    principal.require_systems([system_id], "system_id")
    return system_id


@serve.deployment(name="api")
@serve.ingress(app)
class AkashaAPI:
    def __init__(self, embedder: DeploymentHandle, settings: dict[str, Any]) -> None:
        self._settings = config.from_dict(settings)
        observability.json_logs()  # Akasha's own loggers, with the request id
        self._embedder = embedder
        supervisor.start_all(self._settings)
        self._memories = MemoryService(self._settings)
        self._tiers = self._memories.peers  # the tier owners, the migrator and the graph
        self._shards = self._tiers.shards
        self._keys = supervisor.keys(self._settings)
        self._timeseries = supervisor.timeseries(self._settings)
        self._graph = supervisor.graph(self._settings)
        admin = self._settings.admin_key
        # Under `serve run` nothing else has bootstrapped the admin key: make sure one exists.
        ray.get(self._keys.ensure_admin.remote(admin.get_secret_value() if admin else None))
        # Verified keys, dropped when the keys actor's version moves (checked at most every
        # second), so a revoked key is refused by every replica within about a second.
        self._principals = PrincipalCache(check_every_s=1.0)
        self._timeout = self._settings.serve.request_timeout_s
        serving = self._settings.serve
        Admission.configure(
            Limits(
                ongoing=serving.max_ongoing_requests,
                queued=serving.max_queued_requests,
                deadline_s=serving.http_timeout_s,
                retry_after_s=serving.retry_after_s,
                ingests_ongoing=serving.max_ongoing_ingests,
                ingests_queued=serving.max_queued_ingests,
            )
        )
        self._model_info: dict[str, str] | None = None

        async def require_admin(authorization: str | None) -> None:
            (await self._principal(authorization)).require_admin()

        dr_routes.attach(self._settings, require_admin)

    # -- auth ---------------------------------------------------------------------------------

    async def _principal(self, authorization: str | None) -> Principal:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("send Authorization: Bearer <API key>")
        key_hash = hash_key(key.strip())
        if self._principals.check_due():
            self._principals.observe(await self._call(self._keys.version.remote(), "keys"))
        principal = self._principals.get(key_hash)
        if principal is None:
            found, version = await self._call(self._keys.principal.remote(key_hash), "keys")
            if found is None:
                raise Unauthenticated("unknown, expired or revoked API key")
            principal = Principal.from_dict(found)
            self._principals.put(key_hash, principal, version)
        if principal.expired(now_utc()):
            raise Unauthenticated("unknown, expired or revoked API key")
        return principal

    async def _call(self, ref, component: str, timeout_s: float | None = None):
        return await call(ref, component, timeout_s or self._timeout)

    async def _logged(self, stream: str, kind: str, value: Any, system_id: str | None = None):
        """Log a write that is stored (README, "Regions"); a no-op with DR off. `value`: the
        payload's bytes, or what `changes.json_payload` encodes."""
        recorder = self._memories.changes
        if recorder.enabled:
            payload = value if isinstance(value, bytes) else changes.json_payload(value)
            await recorder.record([(stream, kind, system_id, payload)])

    # -- routes -------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self, authorization: str | None = Authorization) -> dict[str, Any]:
        """ok or degraded for anyone; the components (names, counts, errors) need a valid key."""
        report = await self._health_report()
        if authorization is None:
            return {"status": report["status"]}
        await self._principal(authorization)  # a bad key is a 401, not a silent downgrade
        return report

    async def _health_report(self) -> dict[str, Any]:
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
        if self._settings.dr.enabled:  # replication failing anywhere: degraded, with the error
            checks.append(dr_routes.health(self._settings))
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
            *(["replication"] if self._settings.dr.enabled else []),
        ]
        for name, result in zip(components_named, results, strict=True):
            if isinstance(result, BaseException):
                components[name] = {"status": "down", "error": type(result).__name__}
            elif name.startswith("hot-"):
                components[name] = {"status": "ok", "memories": result["count"]}
            elif name == "embedder":
                components[name] = {"status": "ok", **result}
            elif name == "timeseries":
                # "failing": the store refuses writes (points kept, retried) or refreshes.
                components[name] = {
                    "status": result.get("status", "ok"),
                    "flavour": result.get("flavour"),
                    "pending_points": result.get("pending_points", 0),
                    **(
                        {"error": result["error"], "failing_since": result["failing_since"]}
                        if result.get("status") == "failing"
                        else {}
                    ),
                }
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
            elif name == "replication":
                components[name] = result
            else:
                components[name] = {"status": "ok"}
        healthy = all(c["status"] == "ok" for c in components.values())
        return {"status": "ok" if healthy else "degraded", "components": components}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(self) -> PlainTextResponse:
        """Prometheus text format, without a key: no label names a system, key or memory."""
        body = await observability.scrape(await self._health_report())
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

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
        ids = batch.column("id").to_pylist()
        entities = {
            memory_key(m.system_id, memory_id): m.entities
            for memory_id, m in zip(ids, body.memories, strict=True)
            if m.entities
        }
        stored = await self._memories.ingest(batch, entities, now)
        return IngestResponse(ids=stored.ids)

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
        if body.ranking == "keyword":
            vector = None  # BM25 alone: no embedding to wait for
        elif body.query is not None:
            vector = await self._embedder.embed_query.remote(body.query)
        else:
            vector = normalize(np.asarray(body.vector, dtype=np.float32))
        only_keys = None
        if body.entity_id is not None:
            call_ = self._graph.entity_memories.remote(
                body.entity_id, system_ids, None, ENTITY_SEARCH_MEMORIES
            )
            only_keys, _ = await self._call(call_, "graph")
        found = await self._memories.search(
            vector,
            body.limit,
            system_ids,
            body.start,
            body.end,
            body.include_cold,
            only_keys,
            mode=body.ranking,
            text=body.query,
        )
        tiers = [
            TierReport(tier=t, latency_ms=a.latency_ms, hits=len(a.hits), error=a.error)
            for t, a in found.answers.items()
        ]
        return SearchResponse(
            results=[SearchHit(**_hit_fields(h)) for h in found.hits],
            tiers=tiers,
            partial=any(t.error for t in tiers),
        )

    @app.get("/v1/memories/{memory_id}", response_model=Memory)
    async def get_memory(
        self,
        memory_id: MemoryId,
        system_id: SystemParam = None,
        authorization: str | None = Authorization,
    ) -> Memory:
        principal = await self._principal(authorization)
        principal.require("read")
        key = memory_key(_system_of(principal, system_id), memory_id)
        copies = await self._memories.find(key)
        if not copies:
            raise NotFound(f"no memory {memory_id!r}")
        tier, row = copies[0]
        return Memory(tier=tier, **row)

    @app.delete("/v1/memories/{memory_id}", status_code=204)
    async def delete_memory(
        self,
        memory_id: MemoryId,
        system_id: SystemParam = None,
        authorization: str | None = Authorization,
    ) -> Response:
        principal = await self._principal(authorization)
        principal.require("write")
        key = memory_key(_system_of(principal, system_id), memory_id)
        if not await self._memories.delete(key):
            raise NotFound(f"no memory {memory_id!r}")
        return Response(status_code=204)

    @app.post("/v1/keys", status_code=201, response_model=KeyResponse)
    async def create_key(
        self, body: KeyRequest, authorization: str | None = Authorization
    ) -> KeyResponse:
        principal = await self._principal(authorization)
        principal.require_admin()
        await self._memories.changes.check()
        created = await self._call(
            self._keys.create.remote(
                body.system_ids,
                body.scopes,
                body.expires_at,
                request_id=observability.request_id(),
            ),
            "keys",
        )
        await self._log_key(created["key_id"])
        return KeyResponse(**{k: created[k] for k in KeyResponse.model_fields})

    async def _log_key(self, key_id: str) -> None:
        """A key change ships as the stored record (its hash, never the key): replicas adopt it."""
        if self._memories.changes.enabled:
            records = await self._call(self._keys.records.remote(), "keys")
            record = next(r for r in records if r["key_id"] == key_id)
            await self._logged(changes.KEYS, "key", record)

    @app.get("/v1/keys", response_model=KeyList)
    async def list_keys(self, authorization: str | None = Authorization) -> KeyList:
        (await self._principal(authorization)).require_admin()
        return KeyList(keys=await self._call(self._keys.list_keys.remote(), "keys"))

    @app.delete("/v1/keys/{key_id}", status_code=204)
    async def revoke_key(
        self,
        key_id: Annotated[str, Path(pattern=KEY_ID_PATTERN)],
        authorization: str | None = Authorization,
    ) -> Response:
        (await self._principal(authorization)).require_admin()
        await self._memories.changes.check()
        revoke = self._keys.revoke.remote(key_id, request_id=observability.request_id())
        await self._call(revoke, "keys")
        await self._log_key(key_id)
        return Response(status_code=204)

    @app.post("/v1/metrics", status_code=202)
    async def write_metrics(
        self, body: WritePointsRequest, authorization: str | None = Authorization
    ) -> dict[str, int]:
        principal = await self._principal(authorization)
        principal.require("write")
        principal.require_systems([p.system_id for p in body.points], "points.system_id")
        batch = PointBatch.from_points(body.points)
        await self._memories.changes.check()
        await self._call(self._timeseries.write.remote(batch), "timeseries")
        systems = {p.system_id for p in body.points}
        system = systems.pop() if len(systems) == 1 else None
        await self._logged(changes.METRICS, "metrics", changes.table_payload(batch.table), system)
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

    # -- knowledge graph: entities and relationships belong to systems, or are shared (admin) --
    # Rules in akasha_ray.graph.access; what a key may not read answers 404, as an unknown id.

    @app.post("/v1/graph/entities", status_code=201)
    async def upsert_entities(
        self, body: EntitiesRequest, authorization: str | None = Authorization
    ) -> dict[str, int]:
        principal = await self._principal(authorization)
        principal.require("write")
        entities = access.owned_entities(principal, body.entities)
        await self._memories.changes.check()
        count = await self._call(self._graph.upsert_entities.remote(entities), "graph")
        await self._logged(changes.GRAPH, "entities", [e.model_dump(mode="json") for e in entities])
        return {"upserted": count}

    @app.post("/v1/graph/relationships", status_code=201)
    async def upsert_relationships(
        self, body: RelationshipsRequest, authorization: str | None = Authorization
    ) -> dict[str, int]:
        principal = await self._principal(authorization)
        principal.require("write")
        relationships = access.owned_relationships(principal, body.relationships)
        await self._memories.changes.check()
        call_ = self._graph.upsert_relationships.remote(relationships)
        upserted = await self._call(call_, "graph")
        dumped = [r.model_dump(mode="json") for r in relationships]
        await self._logged(changes.GRAPH, "relationships", dumped)
        return {"upserted": upserted}

    @app.get("/v1/graph/entities/{entity_id}", response_model=Entity)
    async def get_entity(
        self,
        entity_id: EntityId,
        system_id: GraphSystemParam = None,
        authorization: str | None = Authorization,
    ) -> Entity:
        principal = await self._principal(authorization)
        principal.require("read")
        home, _ = access.read_scope(principal, system_id)
        entity = await self._call(self._graph.get_entity.remote(entity_id, home), "graph")
        if entity is None:
            raise NotFound(f"no entity {entity_id!r}")
        return entity

    @app.delete("/v1/graph/entities/{entity_id}", status_code=204)
    async def delete_entity(
        self,
        entity_id: EntityId,
        system_id: GraphSystemParam = None,
        authorization: str | None = Authorization,
    ) -> Response:
        """Deletes exactly the entity of `system_id` (the admin's default: the shared one)."""
        principal = await self._principal(authorization)
        principal.require("write")
        owner = access.owner(principal, system_id)
        await self._memories.changes.check()
        if not await self._call(self._graph.delete_entity.remote(entity_id, owner), "graph"):
            raise NotFound(f"no entity {entity_id!r}")
        deleted = {"entity_id": entity_id, "owner": owner}
        await self._logged(changes.GRAPH, "delete_entity", deleted, owner)
        return Response(status_code=204)

    @app.get("/v1/graph/entities/{entity_id}/neighbors", response_model=Neighborhood)
    async def neighbors(
        self,
        entity_id: EntityId,
        depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 1,
        types: Annotated[str | None, Query(description="Comma-separated types.")] = None,
        as_of: Annotated[UtcDatetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        system_id: GraphSystemParam = None,
        authorization: str | None = Authorization,
    ) -> Neighborhood:
        principal = await self._principal(authorization)
        principal.require("read")
        home, visible = access.read_scope(principal, system_id)
        call_ = self._graph.neighbors.remote(
            entity_id, depth, _types(types), as_of, limit, system_id=home, visible=visible
        )
        return await self._call(call_, "graph")

    @app.get("/v1/graph/path", response_model=PathResult)
    async def path(
        self,
        source: EntityId,
        target: EntityId,
        max_hops: Annotated[int, Query(ge=MIN_HOPS, le=MAX_HOPS)] = 5,
        types: Annotated[str | None, Query(description="Comma-separated types.")] = None,
        as_of: Annotated[UtcDatetime | None, Query()] = None,
        directed: bool = False,
        system_id: GraphSystemParam = None,
        authorization: str | None = Authorization,
    ) -> PathResult:
        principal = await self._principal(authorization)
        principal.require("read")
        home, visible = access.read_scope(principal, system_id)
        call_ = self._graph.shortest_path.remote(
            source,
            target,
            max_hops,
            _types(types),
            as_of,
            directed,
            system_id=home,
            visible=visible,
        )
        return await self._call(call_, "graph")

    @app.get("/v1/graph/entities/{entity_id}/memories")
    async def entity_memories(
        self,
        entity_id: EntityId,
        system_id: Annotated[
            Name | None,
            Query(description="Only this system's memories; default: every system of the key."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_MEMORIES_PAGE)] = DEFAULT_MEMORIES_PAGE,
        cursor: Annotated[
            str | None, Query(max_length=300, description="`next_cursor` of the page before.")
        ] = None,
        authorization: str | None = Authorization,
    ) -> dict[str, Any]:
        """Memories in the hot tier that mention the entity id, a page at a time in key order."""
        principal = await self._principal(authorization)
        principal.require("read")
        systems = access.memory_systems(principal, system_id)
        call_ = self._graph.entity_memories.remote(entity_id, systems, cursor, limit)
        keys, next_cursor = await self._call(call_, "graph")
        parts = self._tiers.by_shard(keys)
        rows = await self._call(
            asyncio.gather(*(self._shards[i].get_many.remote(k) for i, k in parts.items())),
            "hot shards",
        )
        found = {memory_key(r["system_id"], r["id"]): r for part in rows for r in part}
        memories = [
            Memory(tier="hot", **found[k])
            for k in keys
            if k in found and principal.may_see(found[k]["system_id"])
        ]
        return {"memories": memories, "next_cursor": next_cursor}

    @app.get("/v1/tiers")
    async def tiers(self, authorization: str | None = Authorization) -> dict[str, Any]:
        """Per tier: how many memories of the key's systems, the oldest and newest (the admin:
        every system, and bytes on disk, None: unknown); the hot window in force (the admin:
        and the last migration pass). From counters each store keeps on write: no scan."""
        principal = await self._principal(authorization)
        principal.require("read")
        systems = None if principal.admin else sorted(principal.system_ids)
        hot, warm, cold, migration = await self._call(
            asyncio.gather(
                self._hot_summaries(systems),
                _awaitable(self._tiers.warm.summary.remote(systems)),
                _awaitable(self._tiers.cold.summary.remote(systems)),
                _awaitable(self._tiers.migrator.status.remote()),
            ),
            "tiers",
        )
        admin = principal.admin
        if not admin:  # a pass's counts are every system's
            migration = {k: migration[k] for k in ("hot_window", "every_s")}
        return {
            "tiers": [
                _tier_summary("hot", hot, admin),
                _tier_summary("warm", [warm], admin),
                _tier_summary("cold", [cold], admin),
            ],
            "migration": migration,
        }

    async def _hot_summaries(self, systems: list[str] | None) -> list[dict[str, Any]]:
        """Each shard's summary of the systems it owns (None: every system, every shard)."""
        plan = plan_hot(systems, len(self._shards))
        return await asyncio.gather(*(self._shards[i].summary.remote(s) for i, s in plan.items()))

    @app.post("/v1/tiers/migrate")
    async def migrate(self, authorization: str | None = Authorization) -> dict[str, Any]:
        """A migration pass now (admin), after any pass already running: it adapts the hot window,
        then moves what has aged out. Returns the window in force and the counts per hop."""
        (await self._principal(authorization)).require_admin()
        pass_ = _awaitable(self._tiers.migrator.migrate.remote())
        return await self._call(pass_, "migrator", MIGRATE_TIMEOUT_S)

    @app.get("/v1/stats")
    async def stats(self, authorization: str | None = Authorization) -> dict[str, Any]:
        """The admin: each hot shard's counts and size. A scoped key: per system of its own,
        each tier's count, oldest and newest. From counters kept on write: no scan."""
        principal = await self._principal(authorization)
        principal.require("read")
        if not principal.admin:
            return {"systems": await self._call(self._system_stats(principal), "tiers")}
        shards = await self._call(
            asyncio.gather(*(s.stats.remote() for s in self._shards)), "hot shards"
        )
        return {"hot": [{"shard": i, **s} for i, s in enumerate(shards)]}

    async def _system_stats(self, principal: Principal) -> list[dict[str, Any]]:
        systems = sorted(principal.system_ids)
        shard = self._tiers.shard_index
        per_tier = [
            [self._shards[shard(s)].summary.remote([s]) for s in systems],
            [self._tiers.warm.summary.remote([s]) for s in systems],
            [self._tiers.cold.summary.remote([s]) for s in systems],
        ]
        hot, warm, cold = await asyncio.gather(*(asyncio.gather(*calls) for calls in per_tier))
        return [
            {"system_id": s, "hot": h, "warm": w, "cold": c}
            for s, h, w, c in zip(systems, hot, warm, cold, strict=True)
        ]

    # -- helpers ------------------------------------------------------------------------------

    async def _model(self) -> dict[str, str]:
        if self._model_info is None:
            info = await self._embedder.model.remote()
            self._model_info = {"model": info["model"], "model_revision": info["revision"]}
        return self._model_info
