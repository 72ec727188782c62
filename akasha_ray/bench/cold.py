"""Cold archive benchmark: one system's archive searched over HTTP, as a user meets it, against
an exact numpy scan of the same vectors (the peer), and the backfill of that archive over HTTP
against plain sentence-transformers `encode` of the same texts.

    python -m akasha_ray.bench cold [--memories 10000] [--days 400] [--searches 200]

Memories: the turns of ../shared/datasets/locomo-dev (read in place), repeated with a counter
until there are `--memories`, dated over `--days` days ending 120 days ago: older than
warm_days (the cold tier), within tiers.cold_search_days (what a search without `start`
reaches). A second system's archive of the same size sits beside it, so the search has a system
filter to apply. Searches: `include_cold`, the one system, by vector (the cold path alone) and by
text in each mode (hybrid is the default; the query's embedding included), each with every
tier's own latency (p50, from the answers' `tiers`), beside plain sentence-transformers encoding
the same query texts one at a time (the part of a search by text no tier can save). Prints one
JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.encode import DATASET, conversation_texts
from akasha_ray.bench.served import served_akasha
from akasha_ray.bench.stats import machine, ratio, summarize
from akasha_ray.ports import free_port

SYSTEMS = ("archive-bot", "other-bot")
BATCH = 500
MODES = ("vector", "keyword", "hybrid")


def log(message: str) -> None:
    print(f"[bench cold] {message}", file=sys.stderr, flush=True)


def memories(texts: list[str], n: int, days: int, system: str) -> list[dict[str, Any]]:
    newest = datetime.now(UTC) - timedelta(days=120)  # older than warm_days: cold
    step = timedelta(days=days) / n
    return [
        {
            "id": f"m{i}",
            "system_id": system,
            "conversation_id": f"c{i // 50}",
            "content": f"{texts[i % len(texts)]} ({i})",
            "created_at": (newest - step * i).isoformat(),
        }
        for i in range(n)
    ]


def plain_encode(texts: list[str], queries: list[str]) -> tuple[float, dict[str, float]]:
    """Seconds plain sentence-transformers takes to encode `texts` (the backfill's peer), and
    its latency encoding each of `queries` alone (the query embedding's)."""
    from sentence_transformers import SentenceTransformer

    from akasha_ray.embedding import bundled_model_path

    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    model.encode(texts[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    seconds = time.perf_counter() - started
    one = []
    for query in queries:
        started = time.perf_counter()
        model.encode([query], normalize_embeddings=True, show_progress_bar=False)
        one.append(time.perf_counter() - started)
    return seconds, summarize(one)


def backfill(http, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for n in range(0, len(rows), BATCH):
        response = http.post("/v1/memories", json={"memories": rows[n : n + BATCH]}, timeout=600)
        response.raise_for_status()
        log(f"  {min(n + BATCH, len(rows))}/{len(rows)} stored")
    return time.perf_counter() - started


def search_times(http, bodies: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    """Latency over HTTP, with each tier's own p50 (`tier_p50_ms`), and the answers."""
    seconds, answers = [], []
    for body in bodies[:5]:  # warm-up: the first search decodes the archive's files
        http.post("/v1/search", json=body).raise_for_status()
    for body in bodies:
        started = time.perf_counter()
        response = http.post("/v1/search", json=body)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        answers.append(response.json())
    tiers: dict[str, list[float]] = {}
    for answer in answers:
        for tier in answer["tiers"]:
            tiers.setdefault(tier["tier"], []).append(tier["latency_ms"])
    by_tier = {tier: round(float(np.median(ms)), 2) for tier, ms in tiers.items()}
    return {**summarize(seconds), "tier_p50_ms": by_tier}, answers


def numpy_peer(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[dict, list[list[int]]]:
    seconds, tops = [], []
    for query in queries:
        started = time.perf_counter()
        scores = vectors @ query
        top = np.argpartition(-scores, k)[:k]
        tops.append(top[np.argsort(-scores[top])].tolist())
        seconds.append(time.perf_counter() - started)
    return summarize(seconds), tops


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench cold")
    parser.add_argument("--memories", type=int, default=10_000, help="per system")
    parser.add_argument("--days", type=int, default=400, help="the archive's span (<= 600)")
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)

    texts = conversation_texts(DATASET, 100_000)
    archives = {s: memories(texts, args.memories, args.days, s) for s in SYSTEMS}
    mine = archives[SYSTEMS[0]]
    contents = [m["content"] for m in mine]
    rng = np.random.default_rng(0)
    asked = rng.choice(len(mine), args.searches, replace=len(mine) < args.searches)
    log(f"plain encode of {len(contents)} texts, then of {len(asked)} queries alone (the peer)")
    encode_s, plain_query = plain_encode(contents, [contents[i] for i in asked])

    with (
        tempfile.TemporaryDirectory(prefix="akasha-bench-cold-") as folder,
        served_akasha(Path(folder) / "data", port=free_port()) as http,
    ):
        log(f"backfill of {len(mine)} memories into cold over HTTP")
        backfill_s = backfill(http, mine)
        backfill(http, archives[SYSTEMS[1]])
        tiers = http.get("/v1/tiers").json()
        from akasha_ray.embedding import Embedder

        queries = Embedder().embed([contents[i] for i in asked])
        base = {"system_ids": [SYSTEMS[0]], "include_cold": True, "limit": args.limit}
        by_vector = [{**base, "vector": q.tolist(), "mode": "vector"} for q in queries]
        log(f"{args.searches} searches by vector, then by text in each mode, over HTTP")
        vector_http, vector_answers = search_times(http, by_vector)
        text_http = {}
        for mode in MODES:
            bodies = [{**base, "query": contents[i], "mode": mode} for i in asked]
            text_http[mode], _ = search_times(http, bodies)

    log("numpy peer over the same vectors")
    vectors = Embedder().embed(contents)
    peer, tops = numpy_peer(vectors, queries, args.limit)
    expected = [[mine[i]["id"] for i in top] for top in tops]
    got = [[h["id"] for h in a["results"]] for a in vector_answers]
    overlap = [len(set(e) & set(g)) / len(e) for e, g in zip(expected, got, strict=True)]
    agreement = float(np.mean(overlap))
    report = {
        "benchmark": "cold",
        "machine": machine(),
        "memories_per_system": args.memories,
        "systems": len(SYSTEMS),
        "days": args.days,
        "memories_by_tier": {t["tier"]: t["count"] for t in tiers["tiers"]},
        "search_http_by_vector": vector_http,
        "search_http_by_text": text_http,
        "plain_encode_one_query": plain_query,
        "numpy_peer": peer,
        "http_vs_numpy_p95": ratio(vector_http["p95_ms"], peer["p95_ms"]),
        "top_k_agreement_with_numpy": round(agreement, 4),
        "backfill_memories_per_s": round(len(mine) / backfill_s, 1),
        "plain_encode_texts_per_s": round(len(contents) / encode_s, 1),
        "backfill_vs_plain_encode": ratio(len(mine) / backfill_s, len(contents) / encode_s),
    }
    print(json.dumps(report, indent=1))
    return 0
