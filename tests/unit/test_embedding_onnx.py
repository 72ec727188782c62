"""The ONNX Runtime backends against the torch model they are exported from."""

import numpy as np
import pytest

from akasha_ray import embedding_onnx
from akasha_ray.config import EmbeddingConfig
from akasha_ray.embedding import Embedder, bundled_model_path

SENTENCES = [
    "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    "Melanie: That's amazing! What made it feel so special for you?",
    "My order arrived with a cracked screen, can I get a refund?",
    "The kubernetes pod keeps restarting with CrashLoopBackOff after the deploy.",
    "We painted a sunrise over the lake last weekend with the kids.",
    "Did you remember to book the train tickets to Lisbon for March?",
    "The quarterly report shows revenue up 12% but margins slightly down.",
    "I'm thinking of adopting a rescue dog, maybe a beagle.",
    "Roll back the payments service to the previous revision, please.",
    "She ran her first marathon in under four hours!",
    "Our database failover took ninety seconds, which broke the SLA.",
    "Grandma's recipe uses cardamom, orange zest and a pinch of salt.",
    "Can you explain the difference between a mutex and a semaphore?",
    "I started volunteering at the animal shelter on Saturdays.",
    "The meeting moved to Thursday at 3 pm because of the holiday.",
    "He keeps forgetting his password and locking himself out.",
    "The museum had an exhibit on early twentieth century photography.",
    "Please summarize the customer's complaint in two sentences.",
    "I finally finished reading that fantasy series, the ending was wild.",
    "Our flight was delayed six hours in Frankfurt.",
    "What's the best way to store fresh basil so it doesn't wilt?",
    "The CI pipeline fails only on ARM runners, never on x86.",
    "We're planning a camping trip to the mountains in August.",
    "My therapist suggested journaling every evening before bed.",
    "The invoice lists two charges for the same subscription.",
    "Jon lost his job as a banker and decided to open a dance studio.",
    "Gina launched an online clothing store after the shop closed.",
    "ok",
    "Thanks!",
    "Sure, see you tomorrow.",
    "The new transformer model cut our inference latency in half, which matters a lot for "
    "the interactive features we are shipping next quarter across every region we serve.",
    "Is it normal for a sourdough starter to smell like acetone?",
    "I have been learning to play the violin for about three years now.",
    "The landlord says the heating will be fixed by Friday.",
    "Remind me to call the dentist about my appointment.",
    "They adopted two kittens from the shelter last month.",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


def torch_embedder() -> Embedder:
    return Embedder(EmbeddingConfig(backend="torch"))


@pytest.fixture(scope="module")
def torch_vectors():
    return torch_embedder().embed(SENTENCES)


def onnx_embedder(cache, backend: str = "onnx") -> Embedder:
    return Embedder(EmbeddingConfig(backend=backend, onnx_cache=str(cache), batch_size=8))


def test_onnx_agrees_with_torch(cache, torch_vectors):
    vectors = onnx_embedder(cache).embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cosines = np.sum(vectors * torch_vectors, axis=1)
    assert cosines.min() >= 0.999, cosines.min()


def test_onnx_one_by_one_equals_batched(cache):
    embedder = onnx_embedder(cache)
    batched = embedder.embed(SENTENCES[:6])
    alone = np.vstack([embedder.embed([s]) for s in SENTENCES[:6]])
    assert np.allclose(batched, alone, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_int8_agreement(cache, torch_vectors):
    cosines = np.sum(onnx_embedder(cache, "onnx-int8").embed(SENTENCES) * torch_vectors, axis=1)
    # Measured on 2,760 conversation turns: mean 0.996, min 0.991 (see README); here mean 0.995,
    # and min 0.967 on "Thanks!": three tokens do not average the int8 noise out.
    assert cosines.mean() >= 0.993 and cosines.min() >= 0.96, (cosines.mean(), cosines.min())


def test_per_token_scaling_is_exact_in_float(cache, tmp_path):
    import onnx

    onnx_embedder(cache).embed(["export"])
    (fp32,) = cache.glob("*/model.onnx")
    model = onnx.load(str(fp32))
    embedding_onnx._per_token_scaled(model, range(6))
    scaled = tmp_path / "scaled.onnx"
    onnx.save(model, str(scaled))
    encoders = [
        embedding_onnx.OnnxEncoder(bundled_model_path(), path, threads=1, batch_size=8)
        for path in (fp32, scaled)
    ]
    plain, rescaled = (encoder.encode(SENTENCES) for encoder in encoders)
    assert np.allclose(plain, rescaled, atol=1e-5)
    with pytest.raises(RuntimeError, match="lacks the MatMuls"):
        embedding_onnx._per_token_scaled(onnx.load(str(fp32)), range(7))


def test_revision_names_the_backend(cache):
    torch_revision = torch_embedder().revision
    onnx_revision = onnx_embedder(cache).revision
    int8_revision = onnx_embedder(cache, "onnx-int8").revision
    assert len(torch_revision) == 16
    assert onnx_revision == f"{torch_revision}+onnx.{embedding_onnx.EXPORT_RECIPE}"
    assert int8_revision == f"{torch_revision}+onnx-int8.{embedding_onnx.EXPORT_RECIPE}"


def test_export_is_reused_on_a_second_start(cache, monkeypatch):
    onnx_embedder(cache).embed(["first start"])
    (model,) = cache.glob("*/model.onnx")
    before = model.stat()

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(embedding_onnx, "_export", no_export)
    onnx_embedder(cache).embed(["second start"])
    after = model.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(cache.glob("*/.*.tmp"))  # written atomically: nothing half-done left


def test_onnx_is_cpu_only():
    for backend in ("onnx", "onnx-int8"):
        with pytest.raises(ValueError, match=r"cpu only: set embedding\.backend to torch"):
            EmbeddingConfig(backend=backend, device="cuda")
    assert EmbeddingConfig(backend="torch", device="cuda").device == "cuda"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        EmbeddingConfig(backend="tensorrt")
