"""What DR costs a write: ingest latency over HTTP with DR off, `dr.mode: async` and `sync`.

    python -m akasha_ray.bench dr [--requests 200] [--batch 1] [--modes off,async,sync]
        [--bucket-root DIR | --endpoint http://... --bucket s3://name/prefix]

Each mode runs a whole Akasha of its own (Ray, actors, the Serve app) on a fresh data dir and
sends the same sequence of POST /v1/memories (one at a time, `--batch` memories each). With DR
on, this region is primary and ships to one backup region whose bucket is a local folder (or an
S3 bucket): async answers once the change is in the local log; sync answers once the backup's
bucket holds it (one Delta commit on the write's path). Median and p95 latency per mode, and
memories/s against DR off.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from akasha_ray.bench.stats import machine, ratio, summarize

WORDS = [
    "memory",
    "region",
    "primary",
    "backup",
    "ship",
    "apply",
    "witness",
    "epoch",
    "change",
    "log",
    "delta",
    "lake",
]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="akasha bench dr", description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="timed POSTs per mode")
    parser.add_argument("--warmup", type=int, default=10, help="untimed POSTs first")
    parser.add_argument("--batch", type=int, default=1, help="memories per POST")
    parser.add_argument("--modes", default="off,async,sync")
    parser.add_argument("--bucket-root", help="folder for the regions' buckets (default: temp)")
    parser.add_argument("--endpoint", help="S3 endpoint for --bucket (credentials: AWS_* env)")
    parser.add_argument("--bucket", help="s3://name/prefix: the backup region's bucket")
    parser.add_argument("--port", type=int, default=8769)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _dr(mode: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    if mode == "off":
        return {}
    backup = {"name": "bench-backup", "role": "backup", "bucket": str(root / "backup")}
    if args.bucket:
        backup = {**backup, "bucket": args.bucket, "endpoint_url": args.endpoint}
    regions = [
        {"name": "bench", "role": "primary", "bucket": str(root / "bench"), "url": None},
        backup,
    ]
    return {"dr": {"region": "bench", "regions": regions, "mode": mode}}


def _one_mode(mode: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from akasha_ray.bench.served import served_akasha

    rng = random.Random(args.seed)
    data_dir = root / f"data-{mode}"
    with served_akasha(data_dir, port=args.port, **_dr(mode, root, args)) as http:
        sent = 0

        def post() -> float:
            nonlocal sent
            memories = []
            for _ in range(args.batch):
                sent += 1
                text = " ".join(rng.choice(WORDS) for _ in range(20))
                memories.append(
                    {"system_id": "bench", "conversation_id": "c", "content": f"{sent} {text}"}
                )
            started = time.perf_counter()
            http.post("/v1/memories", json={"memories": memories}).raise_for_status()
            return time.perf_counter() - started

        for _ in range(args.warmup):
            post()
        started = time.perf_counter()
        seconds = [post() for _ in range(args.requests)]
        wall = time.perf_counter() - started
        dr = http.get("/v1/dr/status").json() if mode != "off" else None
    report: dict[str, Any] = {
        **summarize(seconds),
        "memories_per_s": round(args.requests * args.batch / wall, 1),
    }
    if dr is not None:
        report["dr_status"] = {"status": dr["status"], "errors": dr.get("errors")}
    print(f"{mode}: {report}", file=sys.stderr)
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    report: dict[str, Any] = {
        "benchmark": "dr",
        "machine": {**machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "params": vars(args),
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="akasha-bench-dr-") as tmp:
        root = Path(args.bucket_root) if args.bucket_root else Path(tmp)
        for mode in modes:
            report["modes"][mode] = _one_mode(mode, args, root)
    off = report["modes"].get("off")
    if off:
        report["vs_off"] = {
            mode: {
                "p50_ratio": ratio(r["p50_ms"], off["p50_ms"]),
                "p95_ratio": ratio(r["p95_ms"], off["p95_ms"]),
                "throughput_ratio": ratio(r["memories_per_s"], off["memories_per_s"]),
            }
            for mode, r in report["modes"].items()
            if mode != "off"
        }
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> int:
    json.dump(run(_parse(argv)), sys.stdout, indent=2, default=str)
    print()
    return 0
