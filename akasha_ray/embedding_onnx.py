"""The bundled sentence-transformers model on ONNX Runtime: exported once from its own torch
weights into a cache folder (no download), tokenized with its own tokenizer.json, mean-pooled and
normalized as its sentence-transformers config says."""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from akasha_ray.config import EmbeddingConfig
from akasha_ray.embedding_dim import DIM
from akasha_ray.errors import ConfigError

# Part of the cache folder's name: a change to the export or quantization recipe rebuilds.
EXPORT_RECIPE = "v2"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# onnx-int8: the feed-forward MatMuls of these encoder layers get per-token scaled inputs.
PER_TOKEN_LAYERS = range(3)
FEED_FORWARD = ("intermediate/dense/MatMul", "output/dense/MatMul")


def cache_root(config: EmbeddingConfig) -> Path:
    if config.onnx_cache:
        return Path(config.onnx_cache)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "akasha" / "onnx"


def _atomically(target: Path, write: Callable[[Path], None]) -> None:
    """`write` into a temporary file beside `target`, then rename: concurrent replicas exporting
    at once each produce a whole file and the last rename wins; a crash leaves no half model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(scratch)
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)


def _export(model_path: Path, target: Path) -> None:
    """torch.onnx (TorchScript exporter: the dynamo one needs onnxscript) of the transformer
    that sentence-transformers itself loads from `model_path`; the output is the token states."""
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention: the SDPA one exports a Where and an IsNaN per layer (its fully masked row
    # guard) that cost about a tenth of the int8 model's time; the results are the same.
    transformer = SentenceTransformer(
        str(model_path), device="cpu", model_kwargs={"attn_implementation": "eager"}
    )[0].auto_model.eval()

    class TokenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A padded example batch, so the traced graph is the general (masked) one.
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 7592, 2088, 2088, 102]])
    example = (ids, (ids > 0).long(), torch.zeros_like(ids))
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {i: n for n, i in axes.items()} for name in (*INPUTS, "token_states")}

    def write(scratch: Path) -> None:
        # The tracer warns of branches that are fixed for this model (no cache, a mask given).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenStates().eval(),
                example,
                str(scratch),
                input_names=list(INPUTS),
                output_names=["token_states"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )

    _atomically(target, write)


def _per_token_scaled(model, layers: range) -> None:
    """Divide the input of the feed-forward MatMuls of `layers` by its abs max per token, and
    multiply their product back by it. Dynamic int8 takes one range for its whole input tensor,
    and in the first layers the [CLS] token's activations there are 2-4x the other tokens'
    largest (17-30 against 6-14), so the others got a few levels; scaled rows each use it all."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    wanted = {
        f"/transformer/encoder/layer.{layer}/{matmul}"
        for layer in layers
        for matmul in FEED_FORWARD
    }
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    axes: dict = {"axes": [-1]}
    if opset >= 18:  # Reduce* take their axes as an input from opset 18 on
        graph.initializer.append(
            numpy_helper.from_array(np.array([-1], np.int64), "per_token_axes")
        )
        axes = {}
    graph.initializer.append(numpy_helper.from_array(np.array(1e-6, np.float32), "per_token_eps"))
    nodes = []
    for node in graph.node:
        if node.name not in wanted:
            nodes.append(node)
            continue
        wanted.discard(node.name)
        x, out, p = node.input[0], node.output[0], node.name
        extra = [] if axes else ["per_token_axes"]
        nodes += [
            helper.make_node("ReduceMax", [x, *extra], [p + "_max"], keepdims=1, **axes),
            helper.make_node("ReduceMin", [x, *extra], [p + "_min"], keepdims=1, **axes),
            helper.make_node("Neg", [p + "_min"], [p + "_neg_min"]),
            helper.make_node("Max", [p + "_max", p + "_neg_min", "per_token_eps"], [p + "_scale"]),
            helper.make_node("Div", [x, p + "_scale"], [p + "_scaled"]),
        ]
        node.input[0], node.output[0] = p + "_scaled", p + "_unscaled"
        nodes += [node, helper.make_node("Mul", [p + "_unscaled", p + "_scale"], [out])]
    if wanted:
        raise RuntimeError(f"exported model lacks the MatMuls {sorted(wanted)}")
    del graph.node[:]
    graph.node.extend(nodes)


def _quantize(fp32: Path, target: Path) -> None:
    """Dynamic int8 of the weight MatMuls, per output channel (per tensor lost too much: mean
    cosine 0.95 against torch); attention score MatMuls and the embedding table stay float.
    The feed-forward MatMuls of the first three layers are quantized on per-token scaled inputs
    (`_per_token_scaled`). On the 512 LoCoMo turns of `python -m akasha_ray.bench encode` that
    took cosine agreement with torch from min 0.984 / mean 0.992 to min 0.993 / mean 0.996 for 8%
    more CPU time; in all six layers: min 0.995 for 18% more; those MatMuls kept float instead:
    min 0.997 for 72% more (only the output ones: min 0.990)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(fp32))
    _per_token_scaled(model, PER_TOKEN_LAYERS)

    def write(scratch: Path) -> None:
        quantize_dynamic(
            model,
            str(scratch),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )

    _atomically(target, write)


def exported_model(model_path: Path, revision: str, *, int8: bool, root: Path) -> Path:
    """The ONNX file for these weights, built on first use and reused after."""
    folder = root / f"{revision}-{EXPORT_RECIPE}"
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        _export(model_path, fp32)
    if not int8:
        return fp32
    quantized = folder / "model-int8.onnx"
    if not quantized.exists():
        _quantize(fp32, quantized)
    return quantized


def _pipeline(model_path: Path) -> tuple[int, bool]:
    """(max_seq_length, normalize) from the model's sentence-transformers files; only the
    Transformer -> mean Pooling [-> Normalize] pipeline is reproduced."""
    listed = json.loads((model_path / "modules.json").read_text())
    modules = [m["type"].rsplit(".", 1)[-1] for m in listed]
    if modules[:2] != ["Transformer", "Pooling"] or modules[2:] not in ([], ["Normalize"]):
        raise ConfigError(f"embedding model at {model_path}: modules {modules} not supported")
    pooling_files = sorted(model_path.glob("*_Pooling/config.json"))
    pooling = json.loads(pooling_files[0].read_text()) if pooling_files else {}
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        raise ConfigError(f"embedding model at {model_path}: pooling {sorted(modes)} is not mean")
    bert = json.loads((model_path / "sentence_bert_config.json").read_text())
    return int(bert["max_seq_length"]), bool(modules[2:])


class OnnxEncoder:
    """`encode(texts)`: float32 rows, pooled and normalized as sentence-transformers does."""

    def __init__(self, model_path: Path, onnx_file: Path, *, threads: int, batch_size: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        max_tokens, self.normalize = _pipeline(model_path)
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads burn the cores Ray's actors share with the encoder.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size

    def _batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        states = self.session.run(None, feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # Sorted by length, as sentence-transformers does, so a batch pads little.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._batch([texts[i] for i in rows])
        return out
