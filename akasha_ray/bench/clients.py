"""Throughput against concurrency: does Akasha hold its rate as clients pile up? (issue #12)

    python -m akasha_ray.bench clients [--levels 1,8,32,256] [--seconds 30] [--ramp 15]
        [--systems 1000]

A whole Akasha on the embedded defaults (its own local cluster, served over HTTP) is loaded with
`--preload` memories spread over `--systems` systems; then, level by level, that many clients
run a closed loop for `--ramp` + `--seconds`, counted over the last `--seconds` (the steady
state): 80% text searches of one system (the default ranking), 20% ingests of 20 memories
(LoCoMo dev turns, read in place), each for a random system: the mix of the issue's first
measurement. A 503 is a refusal, not an error: its client waits Retry-After, as a well-behaved
client does, then goes on. Per level: requests answered (2xx) per second, of them searches per
second and memories ingested per second (ingests have a lane of their own, which refuses first
under overload), p50/p95/p99 of the answered searches and ingests, every status seen.
`collapse_ratio` is the rate at the highest level over the best rate at any level (the issue's
target: >= 0.9; the peer here is Akasha's own best level). JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from akasha_ray.bench.encode import DATASET, conversation_texts
from akasha_ray.bench.served import served_akasha
from akasha_ray.bench.stats import machine, ratio, summarize
from akasha_ray.client import retry_after_s
from akasha_ray.ports import free_port

SEARCH_SHARE = 0.8
INGEST_BATCH = 20


def log(message: str) -> None:
    print(f"[bench clients] {message}", file=sys.stderr, flush=True)


class Mix:
    """The requests of one client: its own random stream, unique memory contents."""

    def __init__(self, texts: list[str], systems: int, seed: int) -> None:
        self.texts, self.systems = texts, systems
        self.rng = random.Random(seed)
        self.seed, self.sent = seed, 0

    def next(self) -> tuple[str, str, dict[str, Any]]:
        system = f"system-{self.rng.randrange(self.systems)}"
        if self.rng.random() < SEARCH_SHARE:
            return (
                "search",
                "/v1/search",
                {"query": self.rng.choice(self.texts)[:120], "system_ids": [system], "limit": 10},
            )
        return "ingest", "/v1/memories", {"memories": self.memories(system, INGEST_BATCH)}

    def memories(self, system: str, n: int) -> list[dict[str, Any]]:
        self.sent += n
        return [
            {
                "system_id": system,
                "conversation_id": f"client-{self.seed}",
                "content": f"{self.rng.choice(self.texts)} ({self.seed}.{self.sent + i})",
            }
            for i in range(n)
        ]


async def run_level(
    url: str, headers: dict[str, str], clients: int, seconds: float, mix_of, ramp_s: float = 0.0
) -> dict[str, Any]:
    """`clients` closed loops for `ramp_s` + `seconds`; only what finished in the last `seconds`
    is counted: the rate in steady state. (All clients start at once, so at a high level the
    first answers come only after a whole queue's worth of work, which counting from the start
    would charge to the level's rate.)"""
    latencies: dict[str, list[float]] = {"search": [], "ingest": []}
    statuses: Counter[str] = Counter()
    refusals: Counter[str] = Counter()  # 503s by why (their message, numbers left out)
    counted_from = time.monotonic() + ramp_s
    end = counted_from + seconds

    async def client(n: int) -> None:
        # Each client has its own connection, as separate callers do. One shared pool of
        # `clients` connections cost the load generator itself a core at 256 clients (httpcore
        # scans its whole pool on every request), CPU taken from the service it measures.
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=300, limits=one
        ) as http:
            mix = mix_of(n)
            while time.monotonic() < end:
                kind, path, body = mix.next()
                started = time.monotonic()
                try:
                    response = await http.post(path, json=body)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                finished = time.monotonic()
                if finished > end:
                    return
                if finished < counted_from:
                    await retry_after(response, end)
                    continue
                statuses[str(response.status_code)] += 1
                if response.is_success:
                    latencies[kind].append(finished - started)
                elif response.status_code == 503:
                    refusals[refusal_reason(response)] += 1
                await retry_after(response, end)

    await asyncio.gather(*(client(n) for n in range(clients)))
    answered = sum(len(v) for v in latencies.values())
    return {
        "clients": clients,
        "seconds": seconds,
        "ramp_s": ramp_s,
        "answered_per_s": round(answered / seconds, 2),
        # Under overload the ingest lane fills first (serve_apps/admission.py): say what was served.
        "searches_per_s": round(len(latencies["search"]) / seconds, 2),
        "memories_ingested_per_s": round(len(latencies["ingest"]) * INGEST_BATCH / seconds, 1),
        "search": summarize(latencies["search"]) if latencies["search"] else None,
        "ingest": summarize(latencies["ingest"]) if latencies["ingest"] else None,
        "statuses": dict(sorted(statuses.items())),
        "refusals": dict(refusals.most_common()),
    }


async def retry_after(response: httpx.Response, end: float) -> None:
    """A refused client waits as it was told (a well-behaved one), at most until `end`."""
    if response.status_code == 503:
        wait = retry_after_s(response) or 1.0
        await asyncio.sleep(min(wait, max(0.0, end - time.monotonic())))


def refusal_reason(response: httpx.Response) -> str:
    """A 503's message with its numbers taken out, so that alike refusals count together."""
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = response.text  # Serve's proxy answers its own 503s in plain text
    return re.sub(r"\d+(\.\d+)?", "N", message)[:100]


def preload(http: httpx.Client, texts: list[str], systems: int, count: int) -> None:
    mix = Mix(texts, systems, seed=0)
    for start in range(0, count, 100):
        rows = [
            mix.memories(f"system-{n % systems}", 1)[0]
            for n in range(start, min(start + 100, count))
        ]
        http.post("/v1/memories", json={"memories": rows}, timeout=600).raise_for_status()
    log(f"preloaded {count} memories over {systems} systems")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench clients")
    parser.add_argument("--levels", default="1,8,32,256", help="concurrent clients, in order")
    parser.add_argument("--seconds", type=float, default=30.0, help="of load per level")
    parser.add_argument("--systems", type=int, default=1000)
    parser.add_argument("--preload", type=int, default=2000, help="memories before the levels")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds at 4 clients first")
    parser.add_argument(
        "--ramp", type=float, default=15.0, help="seconds of each level before counting"
    )
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.levels.split(",") if n.strip().isdigit()]
    if len(levels) != len(args.levels.split(",")) or min(levels, default=0) < 1:
        parser.error(
            f"--levels: a comma-separated list of positive client counts, not {args.levels!r}"
        )

    texts = conversation_texts(DATASET, 100_000)
    with (
        tempfile.TemporaryDirectory(prefix="akasha-bench-clients-") as folder,
        served_akasha(Path(folder) / "data", port=free_port()) as http,
    ):
        preload(http, texts, args.systems, args.preload)
        url, headers = str(http.base_url), {"Authorization": http.headers["Authorization"]}

        def mix_of(level: int):
            return lambda n: Mix(texts, args.systems, seed=level * 100_000 + n)

        if args.warmup > 0:
            asyncio.run(run_level(url, headers, 4, args.warmup, mix_of(0)))
        results = []
        for clients in levels:
            result = asyncio.run(
                run_level(url, headers, clients, args.seconds, mix_of(clients), args.ramp)
            )
            log(
                f"{clients} clients: {result['answered_per_s']} answered/s, "
                f"statuses {result['statuses']}"
            )
            results.append(result)
    best = max(r["answered_per_s"] for r in results)
    report = {
        "benchmark": "clients",
        "machine": machine(),
        "mix": {"search_share": SEARCH_SHARE, "ingest_batch": INGEST_BATCH},
        "systems": args.systems,
        "preloaded": args.preload,
        "levels": results,
        "best_answered_per_s": best,
        "collapse_ratio": ratio(results[-1]["answered_per_s"], best),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
