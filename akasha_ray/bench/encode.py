"""Encoder benchmark: texts/s of plain sentence-transformers `encode` (the peer) against Akasha's
embedding backends (torch, onnx, onnx-int8) in-process on the same real texts, runs interleaved,
and the cosine agreement of each backend with the float32 torch model; then each backend in the
embedder's own arrangement (a query thread and a bulk thread, queries first: serve_apps/embedder.py)
against a plain `encode` of one query; optionally ingest over HTTP with a chosen backend, against
the same plain encode.

    python -m akasha_ray.bench encode [--texts 512] [--runs 5] [--queries 60] [--http onnx,torch]

Texts: the turns of the conversations in ../shared/datasets/locomo-dev (`<speaker>: <text>`),
read in place. Prints one JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.stats import loaded_vs_idle, machine, ratio, summarize
from akasha_ray.ports import free_port

BACKENDS = ("torch", "onnx", "onnx-int8")
DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "locomo-dev"


def log(message: str) -> None:
    print(f"[bench encode] {message}", file=sys.stderr, flush=True)


def conversation_texts(folder: Path, limit: int) -> list[str]:
    texts: list[str] = []
    for path in sorted(folder.glob("*.json")):
        conversation = json.loads(path.read_text())
        for key, turns in conversation.items():
            if key.startswith("session_") and isinstance(turns, list):
                texts += [f"{t['speaker']}: {t['text']}" for t in turns]
    if not texts:
        raise SystemExit(f"no conversation turns under {folder} (see its README)")
    return texts[:limit]


def rates(texts: int, seconds: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    """Throughput per run: the median run, and the p95 (slow) run; with `cpu` (this process's
    CPU seconds per run) also texts per CPU second, which the other load of a shared machine
    disturbs far less than wall time."""
    per_s = texts / np.asarray(seconds)
    by_cpu = {}
    if cpu:
        by_cpu["median_texts_per_cpu_s"] = round(float(np.median(texts / np.asarray(cpu))), 1)
    return {
        **by_cpu,
        "runs": len(seconds),
        "texts": texts,
        "median_texts_per_s": round(float(np.median(per_s)), 1),
        "p95_slow_texts_per_s": round(float(np.percentile(per_s, 5)), 1),
        "median_run_s": round(float(np.median(seconds)), 3),
        "p95_run_s": round(float(np.percentile(seconds, 95)), 3),
    }


def agreement(reference: np.ndarray, vectors: np.ndarray) -> dict[str, float]:
    cosines = np.sum(reference * vectors, axis=1)
    return {
        "cosine_min": round(float(cosines.min()), 5),
        "cosine_mean": round(float(cosines.mean()), 5),
        "cosine_p01": round(float(np.percentile(cosines, 1)), 5),
    }


def bench_in_process(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from akasha_ray.config import EmbeddingConfig
    from akasha_ray.embedding import Embedder, bundled_model_path

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    plain = SentenceTransformer(str(bundled_model_path()), device="cpu")

    def plain_encode(batch: list[str]) -> np.ndarray:
        return plain.encode(batch, batch_size=args.batch_size, show_progress_bar=False)

    encoders = {"plain_sentence_transformers": plain_encode}
    loads = {}
    for backend in BACKENDS:
        embedder = Embedder(
            EmbeddingConfig(backend=backend, threads=threads, batch_size=args.batch_size)
        )
        started = time.perf_counter()
        embedder.embed(texts[:8])  # loads; exports into the cache on the very first run
        loads[backend] = round(time.perf_counter() - started, 2)
        encoders[backend] = embedder.embed
    for encode in encoders.values():
        encode(texts[: args.batch_size])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    cpu: dict[str, list[float]] = {name: [] for name in encoders}
    vectors: dict[str, np.ndarray] = {}
    for run in range(args.runs):
        log(f"run {run + 1}/{args.runs}")
        for name, encode in encoders.items():  # interleaved: the load of the machine drifts
            started, cpu_started = time.perf_counter(), time.process_time()
            vectors[name] = encode(texts)
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    peer = vectors["plain_sentence_transformers"]
    peer = peer / np.linalg.norm(peer, axis=1, keepdims=True)
    report: dict[str, Any] = {"threads": threads, "batch_size": args.batch_size}
    for name in encoders:
        entry = rates(len(texts), seconds[name], cpu[name])
        entry["speedup_vs_plain"] = ratio(
            np.median(seconds["plain_sentence_transformers"]), np.median(seconds[name])
        )
        entry["cpu_speedup_vs_plain"] = ratio(
            np.median(cpu["plain_sentence_transformers"]), np.median(cpu[name])
        )
        if name in BACKENDS:
            entry["load_s"] = loads[name]
            entry["agreement_vs_torch_float32"] = agreement(peer, vectors[name])
        report[name] = entry
    return report


async def embedder_path(
    backend: str | None, queries: list[str], bulk: list[str], *, threads: int = 0
) -> dict[str, Any]:
    """The embedder replica's encodes without Serve: query embeddings (one text each) idle, then
    beside a bulk encode of `bulk` in the replica's chunks, on their two threads and models."""
    import asyncio

    from akasha_ray.config import EmbeddingConfig
    from akasha_ray.embedding import Embedder
    from serve_apps.embedder import embed_in_chunks
    from serve_apps.encode_gate import QueryFirst

    settings = EmbeddingConfig(threads=threads, **({"backend": backend} if backend else {}))
    embedder, bulk_embedder = Embedder(settings), Embedder(settings)  # one model each
    for model in (embedder, bulk_embedder):
        model.embed(["warm-up"])
    gate = QueryFirst()

    async def query(text: str) -> float:
        started = time.perf_counter()
        await gate.run(lambda: embedder.embed([text]), query=True)
        return time.perf_counter() - started

    idle = [await query(text) for text in queries]
    started = time.perf_counter()
    task = asyncio.create_task(embed_in_chunks(bulk_embedder, gate, bulk))
    loaded = []
    while not task.done() or len(loaded) < 3:
        loaded.append(await query(queries[len(loaded) % len(queries)]))
        await asyncio.sleep(0.05)
    await task
    bulk_s = time.perf_counter() - started
    gate.close()
    return {
        "backend": embedder.config.backend,
        **loaded_vs_idle(idle, loaded),
        "bulk_texts": len(bulk),
        "bulk_encode_s": round(bulk_s, 2),
        "bulk_texts_per_s_beside_queries": round(len(bulk) / bulk_s, 1),
    }


def bench_embedder(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """Per backend, `embedder_path` over `--queries` query-sized texts (the first 80 characters
    of turns) and the turns as bulk; the peer: plain `encode` of each query alone, in a process
    where only the calling thread has encoded (torch's best case: see the README)."""
    import asyncio

    from sentence_transformers import SentenceTransformer

    from akasha_ray.embedding import bundled_model_path

    queries = [text[:80] for text in texts[: args.queries]]
    plain = SentenceTransformer(str(bundled_model_path()), device="cpu")
    plain.encode(queries[:1])
    seconds = []
    for text in queries:
        started = time.perf_counter()
        plain.encode([text], show_progress_bar=False)
        seconds.append(time.perf_counter() - started)
    report: dict[str, Any] = {"plain_encode_one_query": summarize(seconds)}
    for backend in BACKENDS:
        log(f"the embedder's path with {backend}")
        entry = asyncio.run(embedder_path(backend, queries, texts, threads=args.threads))
        entry["idle_p50_vs_plain"] = ratio(
            report["plain_encode_one_query"]["p50_ms"], entry["idle"]["p50_ms"]
        )
        report[backend] = entry
    return report


def bench_http(args: argparse.Namespace, backend: str, texts: list[str]) -> dict[str, Any]:
    """POST /v1/memories in batches of 64 (embedded by the embedder replica) on a fresh Akasha
    of its own cluster, `--runs` times, each run a new system."""
    from akasha_ray.bench.served import served_akasha

    with (
        tempfile.TemporaryDirectory(prefix="akasha-bench-encode-") as work,
        served_akasha(
            Path(work), port=free_port(), cpus=args.cpus, embedding={"backend": backend}
        ) as http,
    ):
        seconds = []
        for run in range(args.runs):
            log(f"HTTP ingest with {backend}, run {run + 1}/{args.runs}")
            records = [
                {"system_id": f"bench-{run}", "conversation_id": "c", "content": text}
                for text in texts
            ]
            started = time.perf_counter()
            for lo in range(0, len(records), 64):
                response = http.post("/v1/memories", json={"memories": records[lo : lo + 64]})
                response.raise_for_status()
            seconds.append(time.perf_counter() - started)
        last_id = response.json()["ids"][-1]  # of the last run's system
        last = http.get(f"/v1/memories/{last_id}", params={"system_id": f"bench-{args.runs - 1}"})
    stored = last.json() if last.is_success else {}
    return {
        "backend": backend,
        **rates(len(texts), seconds),
        "model_revision": stored.get("model_revision"),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench encode")
    parser.add_argument("--texts", type=int, default=512, help="How many conversation turns.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="0: every core.")
    parser.add_argument("--queries", type=int, default=60, help="Query embeddings timed.")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument(
        "--http", default="", help="Comma-separated backends to also ingest with over HTTP."
    )
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs of the HTTP half.")
    args = parser.parse_args(argv)
    texts = conversation_texts(args.dataset, args.texts)
    log(f"{len(texts)} texts from {args.dataset}")
    report: dict[str, Any] = {"machine": machine(), "in_process": bench_in_process(args, texts)}
    # After the in-process runs: the embedder's query and bulk threads slow torch for good.
    report["embedder"] = bench_embedder(args, texts)
    plain = report["in_process"]["plain_sentence_transformers"]["median_texts_per_s"]
    for backend in filter(None, args.http.split(",")):
        over_http = bench_http(args, backend, texts)
        over_http["vs_plain_encode"] = ratio(over_http["median_texts_per_s"], plain)
        report.setdefault("http_ingest", []).append(over_http)
    print(json.dumps(report, indent=2))
    return 0
