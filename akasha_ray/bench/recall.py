"""Retrieval quality: the LoCoMo dev conversations through the HTTP API, per search mode, against
an exact vector peer (numpy over the same embeddings) and a plain BM25 peer (rank_bm25) in the
same run.

    python -m akasha_ray.bench recall [--tiers hot,warm,cold] [--conversations 26,30] [--turns N]

Every turn becomes a memory (`"<speaker>: <text>"`) of one system per conversation and tier
measured: "hot" ingests with created_at in the 12 hours before the last hour, "warm" in 12
hours ending 30 days ago (the turns' order kept), "cold" with the session dates of 2022-2024, so
they land in the archive. Every question of categories 1-4 is a
search scoped to its conversation's system; recall@k is the share of its evidence turns in the
top k, MRR the reciprocal rank of the first evidence turn within the top 10. Prints one JSON
document on stdout; progress goes to stderr. The data is read from ../shared (never copied).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.stats import machine, summarize
from akasha_ray.vectors.keyword_index import STOP_WORDS

DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "locomo-dev"
MODES = ("vector", "keyword", "hybrid")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
# The plain BM25 peer of the dataset's README (which measured it at recall@10 0.58): rank_bm25's
# BM25Okapi, lower-cased alphanumeric tokens and the stop list Akasha's index uses, no stemming.
PEER_STOP = STOP_WORDS
INGEST_BATCH = 500


def log(message: str) -> None:
    print(f"[bench recall] {message}", file=sys.stderr, flush=True)


def session_time(text: str) -> datetime:
    """'1:47 pm on 18 May, 2023' as UTC."""
    return datetime.strptime(text, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def load(data: Path, names: list[str] | None, turns_cap: int | None) -> list[dict[str, Any]]:
    """Each conversation: its turns (id, text, created_at) and questions (categories 1-4 whose
    evidence is among the turns)."""
    conversations = []
    for path in sorted(data.glob("*.json")):
        if names and path.stem not in names:
            continue
        raw = json.loads(path.read_text())
        turns = []
        for key, value in raw.items():
            match = re.fullmatch(r"session_(\d+)", key)
            if not match or not isinstance(value, list):
                continue
            when = session_time(raw[f"{key}_date_time"])
            for offset, turn in enumerate(value):
                turns.append(
                    {
                        "id": turn["dia_id"],
                        "content": f"{turn['speaker']}: {turn['text']}",
                        "created_at": when + timedelta(seconds=offset),
                    }
                )
        turns.sort(key=lambda t: t["created_at"])
        turns = turns[:turns_cap] if turns_cap else turns
        held = {t["id"] for t in turns}
        questions = [
            {"question": q["question"], "category": q["category"], "evidence": evidence}
            for q in raw["qa"]
            if q["category"] in CATEGORIES
            and (evidence := sorted({e for e in q.get("evidence", []) if e in held}))
        ]
        conversations.append({"name": path.stem, "turns": turns, "questions": questions})
    return conversations


# Where the turns' created_at end, per tier measured (None: the session dates, 2022-2024).
ENDS = {"hot": timedelta(hours=1), "warm": timedelta(days=30), "cold": None}


def ingest(http, system_id: str, conversation: dict[str, Any], ago: timedelta | None) -> float:
    """POST the turns as memories; returns memories per second."""
    turns = conversation["turns"]
    recent = ago is not None
    shift = timedelta(0)
    if recent:  # the same order, squeezed into 12 hours ending `ago`: the hot or warm tier
        shift = datetime.now(UTC) - ago - turns[-1]["created_at"]
        span = turns[-1]["created_at"] - turns[0]["created_at"]
        scale = min(1.0, timedelta(hours=12) / span) if span else 1.0
    started = time.perf_counter()
    for lo in range(0, len(turns), INGEST_BATCH):
        memories = []
        for turn in turns[lo : lo + INGEST_BATCH]:
            when = turn["created_at"]
            if recent:
                when = turns[-1]["created_at"] + shift - (turns[-1]["created_at"] - when) * scale
            memories.append(
                {
                    "id": turn["id"],
                    "system_id": system_id,
                    "conversation_id": conversation["name"],
                    "content": turn["content"],
                    "created_at": when.isoformat(),
                }
            )
        response = http.post("/v1/memories", json={"memories": memories})
        response.raise_for_status()
    return len(turns) / (time.perf_counter() - started)


def scores(ranked: list[str], evidence: list[str]) -> dict[str, float]:
    wanted = set(evidence)
    first = next((i for i, key in enumerate(ranked[:10]) if key in wanted), None)
    return {
        "recall@5": len(wanted & set(ranked[:5])) / len(wanted),
        "recall@10": len(wanted & set(ranked[:10])) / len(wanted),
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
    }


def report(rows: list[tuple[int, dict[str, float]]]) -> dict[str, Any]:
    """Mean scores overall and per question category."""

    def mean(part: list[dict[str, float]]) -> dict[str, float]:
        return {m: round(float(np.mean([r[m] for r in part])), 4) for m in part[0]} | {
            "questions": len(part)
        }

    by_category = defaultdict(list)
    for category, row in rows:
        by_category[CATEGORIES[category]].append(row)
    return {
        **mean([r for _, r in rows]),
        "by_category": {c: mean(p) for c, p in by_category.items()},
    }


def peers(conversations: list[dict[str, Any]]) -> dict[str, list[tuple[int, dict]]]:
    """The exact vector peer and the plain BM25 peer, in-process over the same turns."""
    from rank_bm25 import BM25Okapi

    from akasha_ray.config import EmbeddingConfig
    from akasha_ray.embedding import Embedder

    embedder = Embedder(EmbeddingConfig(backend="torch"))  # the plain sentence-transformers model
    out: dict[str, list] = {"exact_vector": [], "plain_bm25": []}
    for conversation in conversations:
        ids = [t["id"] for t in conversation["turns"]]
        texts = [t["content"] for t in conversation["turns"]]
        questions = conversation["questions"]
        vectors = embedder.embed(texts)
        queries = embedder.embed([q["question"] for q in questions])
        bm25 = BM25Okapi([_peer_tokens(t) for t in texts], k1=1.2, b=0.75)
        for q, query in zip(questions, queries, strict=True):
            by_cosine = np.argsort(-(vectors @ query), kind="stable")[:10]
            out["exact_vector"].append(
                (q["category"], scores([ids[i] for i in by_cosine], q["evidence"]))
            )
            bm = bm25.get_scores(_peer_tokens(q["question"]))
            by_bm25 = [i for i in np.argsort(-bm, kind="stable")[:10] if bm[i] > 0]
            out["plain_bm25"].append(
                (q["category"], scores([ids[i] for i in by_bm25], q["evidence"]))
            )
    return out


def _peer_tokens(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in PEER_STOP]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from akasha_ray.bench.served import served_akasha

    conversations = load(Path(args.data), args.conversations, args.turns)
    questions = sum(len(c["questions"]) for c in conversations)
    log(f"{len(conversations)} conversations, {questions} questions")
    results: dict[str, Any] = {}
    ingest_rate: dict[str, list[float]] = defaultdict(list)
    latency: dict[str, list[float]] = defaultdict(list)
    with (
        tempfile.TemporaryDirectory(prefix="akasha-recall-") as data_dir,
        served_akasha(Path(data_dir), port=args.port) as http,
    ):
        for tier in args.tiers:
            for c in conversations:
                rate = ingest(http, f"locomo-{c['name']}-{tier}", c, ENDS[tier])
                ingest_rate[tier].append(rate)
            log(f"{tier}: ingested")
            for mode in MODES:
                rows = []
                for c in conversations:
                    for q in c["questions"]:
                        body = {
                            "query": q["question"],
                            "system_ids": [f"locomo-{c['name']}-{tier}"],
                            "limit": 10,
                            "mode": mode,
                        }
                        if tier != "hot":
                            body |= {"include_cold": True, "start": "2020-01-01T00:00:00Z"}
                        started = time.perf_counter()
                        answer = http.post("/v1/search", json=body)
                        latency[f"{tier}/{mode}"].append(time.perf_counter() - started)
                        answer.raise_for_status()
                        found = answer.json()
                        if found["partial"]:
                            raise RuntimeError(f"partial answer: {found['tiers']}")
                        ranked = [h["id"] for h in found["results"]]
                        rows.append((q["category"], scores(ranked, q["evidence"])))
                results[f"akasha_{tier}_{mode}"] = report(rows)
                log(f"{tier}/{mode}: recall@10 {results[f'akasha_{tier}_{mode}']['recall@10']}")
    for name, rows in peers(conversations).items():
        results[name] = report(rows)
    return {
        "benchmark": "recall",
        "dataset": {
            "path": str(args.data),
            "conversations": [c["name"] for c in conversations],
            "turns": sum(len(c["turns"]) for c in conversations),
            "questions": questions,
        },
        "results": results,
        "search_ms_over_http": {k: summarize(v) for k, v in latency.items()},
        "ingest_memories_per_s": {k: round(float(np.mean(v)), 1) for k, v in ingest_rate.items()},
        "machine": machine(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench recall")
    parser.add_argument("--data", default=str(DATA), help="the locomo-dev folder")
    parser.add_argument(
        "--conversations", type=lambda s: s.split(","), default=None, help="e.g. 26,30"
    )
    parser.add_argument("--turns", type=int, default=None, help="the first N turns of each")
    parser.add_argument(
        "--tiers",
        type=lambda s: s.split(","),
        default=["hot", "warm", "cold"],
        help="hot,warm,cold",
    )
    parser.add_argument("--port", type=int, default=18731)
    args = parser.parse_args(argv)
    if not set(args.tiers) <= set(ENDS):
        parser.error(f"--tiers takes {', '.join(ENDS)}")
    print(json.dumps(run(args), indent=2, default=str))
    return 0
