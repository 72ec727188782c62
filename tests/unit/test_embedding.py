import numpy as np
import pytest

from akasha_ray.config import EmbeddingConfig
from akasha_ray.embedding import Embedder, normalize
from akasha_ray.errors import ConfigError


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def test_vectors_are_normalized_float32_384(embedder):
    vectors = embedder.embed(["a refund for a broken blender", "kubernetes pod keeps crashing"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_semantics_and_batching_agree(embedder):
    texts = ["I want my money back for a damaged order", "my pod is in CrashLoopBackOff"]
    query = embedder.embed(["refund for a damaged product"])[0]
    vectors = embedder.embed(texts)
    assert vectors[0] @ query > vectors[1] @ query + 0.2
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(one_by_one, vectors, atol=1e-5)


def test_model_identity(embedder):
    assert embedder.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert embedder.config.backend == "onnx"  # the default
    assert len(embedder.weights_revision) == 16
    assert embedder.revision.startswith(f"{embedder.weights_revision}+onnx.")


def test_bad_model_path(tmp_path):
    with pytest.raises(ConfigError, match="model_path"):
        Embedder(EmbeddingConfig(model_path=str(tmp_path))).embed(["x"])


def test_normalize_guards_zero_rows():
    out = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out[0], [0.6, 0.8]) and np.all(np.isfinite(out))


async def test_bulk_chunks_are_length_sorted_bounded_and_keep_text_order(embedder):
    from serve_apps.embedder import (
        BULK_BUDGET_CHARS,
        BULK_MAX_TEXTS,
        TRUNCATED_CHARS,
        bulk_chunks,
        embed_in_chunks,
    )
    from serve_apps.encode_gate import QueryFirst

    texts = [f"memory {n} " + "word " * (n * 37 % 300) for n in range(150)] + ["x" * 5000]
    chunks = bulk_chunks(texts)
    assert sorted(row for chunk in chunks for row in chunk) == list(range(len(texts)))
    widths = [min(len(texts[row]), TRUNCATED_CHARS) for chunk in chunks for row in chunk]
    assert widths == sorted(widths)  # shortest first: little padding
    for chunk in chunks:
        longest = max(min(len(texts[row]), TRUNCATED_CHARS) for row in chunk)
        assert len(chunk) <= BULK_MAX_TEXTS
        assert len(chunk) == 1 or len(chunk) * longest <= BULK_BUDGET_CHARS
    assert bulk_chunks([]) == []
    gate = QueryFirst()
    try:
        vectors = await embed_in_chunks(embedder, gate, texts)
    finally:
        gate.close()
    assert np.allclose(vectors, embedder.embed(texts), atol=1e-5)  # row n is text n's vector
