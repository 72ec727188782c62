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

# Between bulk chunks, bulk work yields to queries, so a chunk's cost bounds a query's wait. The
# texts are sorted by length and a chunk holds up to BULK_BUDGET_CHARS of padded text (its count
# times its longest; MiniLM reads 256 tokens, about TRUNCATED_CHARS): little padding, and a chunk
# of long texts costs what one of short texts does. Measured on the 2-core machine over 1,000
# LoCoMo turns: 195 texts/s (chunks of 8 unsorted: 129/s; encode of all at once: 182/s), the
# longest chunk 0.17 s.
BULK_BUDGET_CHARS = 4096
BULK_MAX_TEXTS = 64
TRUNCATED_CHARS = 1024


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
    """A bulk encode in `bulk_chunks`, each taking its turn behind queries; rows in text order."""
    vectors = np.empty((len(texts), DIM), dtype=np.float32)
    for rows in bulk_chunks(texts):
        chunk = [texts[row] for row in rows]
        vectors[rows] = await gate.run(lambda chunk=chunk: embedder.embed(chunk), query=False)
    return vectors


def bulk_chunks(texts: list[str]) -> list[list[int]]:
    """The texts' positions, shortest first, cut into chunks of at most BULK_MAX_TEXTS texts and
    BULK_BUDGET_CHARS padded characters (a longer text alone is a chunk)."""
    chunks: list[list[int]] = []
    chunk: list[int] = []
    for row in sorted(range(len(texts)), key=lambda row: len(texts[row])):
        width = min(len(texts[row]), TRUNCATED_CHARS)  # the chunk's longest: sorted
        if chunk and (len(chunk) == BULK_MAX_TEXTS or (len(chunk) + 1) * width > BULK_BUDGET_CHARS):
            chunks.append(chunk)
            chunk = []
        chunk.append(row)
    return [*chunks, chunk] if chunk else chunks
