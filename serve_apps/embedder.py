"""The embedder deployment: query embeddings batched across requests with @serve.batch; bulk
(ingest) embeddings in chunks. Every encode runs off the replica's event loop, queries first
(see encode_gate.py), so a search's query never waits behind a whole ingest."""

from __future__ import annotations

import numpy as np
from ray import serve

from akasha_ray.config import EmbeddingConfig, ServeConfig
from akasha_ray.embedding import Embedder
from akasha_ray.embedding_dim import DIM
from serve_apps.encode_gate import QueryFirst

# Texts per bulk chunk: between chunks, bulk work yields to queries. 4 texts of 2 KB took 0.75 s
# at the median on the loaded 2-core test machine (MiniLM truncates at 256 tokens).
BULK_CHUNK = 8


@serve.deployment(name="embedder")
class EmbedderDeployment:
    def __init__(self, embedding: dict, serving: dict) -> None:
        settings = EmbeddingConfig.model_validate(embedding)
        # One model for queries, one for bulk: each thread its own tokenizer (encode_gate.py).
        self._embedder = Embedder(settings)
        self._bulk = Embedder(settings)
        for embedder in (self._embedder, self._bulk):
            embedder.embed(["warm-up"])  # load the models before the replica takes traffic
        self._gate = QueryFirst()
        tuning = ServeConfig.model_validate(serving)
        self.embed_query.set_max_batch_size(tuning.max_batch_size)
        self.embed_query.set_batch_wait_timeout_s(tuning.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed_query(self, texts: list[str]) -> list[np.ndarray]:
        vectors = await self._gate.run(lambda: self._embedder.embed(texts), query=True)
        return list(vectors)

    async def embed_documents(self, texts: list[str]) -> np.ndarray:
        return await embed_in_chunks(self._bulk, self._gate, texts)

    async def model(self) -> dict[str, str]:
        return {"model": self._embedder.model_name, "revision": self._embedder.revision}


async def embed_in_chunks(embedder: Embedder, gate: QueryFirst, texts: list[str]) -> np.ndarray:
    """A bulk encode, BULK_CHUNK texts at a time, each chunk taking its turn behind queries."""
    parts = []
    for start in range(0, len(texts), BULK_CHUNK):
        chunk = texts[start : start + BULK_CHUNK]
        parts.append(await gate.run(lambda chunk=chunk: embedder.embed(chunk), query=False))
    return np.concatenate(parts) if parts else np.empty((0, DIM), dtype=np.float32)
