"""The embedder deployment: query embeddings batched across requests with @serve.batch."""

from __future__ import annotations

import numpy as np
from ray import serve

from akasha_ray.config import EmbeddingConfig, ServeConfig
from akasha_ray.embedding import Embedder


@serve.deployment(name="embedder")
class EmbedderDeployment:
    def __init__(self, embedding: dict, serving: dict) -> None:
        self._embedder = Embedder(EmbeddingConfig.model_validate(embedding))
        self._embedder.embed(["warm-up"])  # load the model before the replica takes traffic
        tuning = ServeConfig.model_validate(serving)
        self.embed_query.set_max_batch_size(tuning.max_batch_size)
        self.embed_query.set_batch_wait_timeout_s(tuning.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed_query(self, texts: list[str]) -> list[np.ndarray]:
        return list(self._embedder.embed(texts))

    async def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embedder.embed(texts)

    async def model(self) -> dict[str, str]:
        return {"model": self._embedder.model_name, "revision": self._embedder.revision}
