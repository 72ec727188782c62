"""`python -m akasha_ray.bench fleet [--systems 10000] [--duration 600] [--users 24]
[--servers milvus,postgres,bolt,s3|none] [--faults all|none|NAME,...] [--stop-s 30]`

A fleet under load and faults, then an audit; JSON on stdout.

1. Starts the servers asked for (see fleet_stack) and an isolated Akasha (`akasha up` on a Ray
   head of its own) whose stores use them.
2. Creates one scoped key (read, write) per system through `POST /v1/keys` with the admin key.
3. Drives the HTTP API with locust (fleet_load, a process of its own) from every system's key:
   ingest batches (10 and 100 memories, hot, warm, cold and about-to-age), searches (hot only,
   hot+warm, with cold, unbounded, keyword), memory reads, metric writes and 5m/1h queries, graph
   upserts and paths.
4. Meanwhile injects the faults on a schedule (fleet_faults) and measures each one's recovery;
   the load lasts --duration seconds and, if the faults take longer, until the last recovered.
5. Audits every acknowledged write (fleet_audit).

The report: requests/s, p50/p95/p99 per route, errors by status, each fault's error window and
recovery time, lost writes, the configuration and the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from akasha_ray.bench import fleet_faults, fleet_stack, stats
from akasha_ray.bench.fleet_audit import Audit

HOT_DAYS = 7.0
FAULTS_BOUND_S = 900.0  # how long the load may go on past --duration for the faults to finish
TAIL_S = 5.0  # load after the last fault recovered
# The migrator runs a pass a minute, so the memories written about to leave the hot window move
# during the run (and a killed pass has work to finish).
SETTINGS = {
    "AKASHA_TIERS__HOT_TARGET_P95_MS": "null",  # a fixed window: ages place memories as written
    "AKASHA_TIERS__HOT_DAYS": str(HOT_DAYS),
    "AKASHA_TIERS__MIGRATE_EVERY_S": "60",
}


def log(message: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench fleet", description=__doc__)
    parser.add_argument("--systems", type=int, default=10_000)
    parser.add_argument(
        "--duration",
        type=float,
        default=600,
        help="seconds of load, at least: it goes on until the last fault recovered",
    )
    parser.add_argument("--users", type=int, default=24, help="concurrent locust users")
    parser.add_argument(
        "--servers",
        default=",".join(fleet_stack.SERVERS),
        help="stores on real servers (needs root and the checkout's tests/servers), or 'none'",
    )
    parser.add_argument(
        "--faults",
        default="all",
        help=f"'all', 'none' or a list of {','.join(fleet_faults.KILLS + fleet_faults.STOPS)}",
    )
    parser.add_argument("--stop-s", type=float, default=30, help="how long a server is stopped")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before the first fault")
    parser.add_argument("--out", type=Path, help="keep the records here (default: a temp dir)")
    args = parser.parse_args(argv)
    args.server_names = [] if args.servers == "none" else args.servers.split(",")
    unknown = set(args.server_names) - set(fleet_stack.SERVERS)
    if unknown:
        parser.error(f"--servers: unknown {sorted(unknown)}")
    every = list(fleet_faults.KILLS + fleet_faults.STOPS)
    named = {"all": every, "none": []}
    args.fault_names = named[args.faults] if args.faults in named else args.faults.split(",")
    if set(args.fault_names) - set(every):
        parser.error(f"--faults: unknown {sorted(set(args.fault_names) - set(every))}")
    return args


def create_keys(url: str, admin_key: str, count: int) -> dict[str, str]:
    """One scoped key per system, through the API."""
    systems = [f"fleet-{i:05d}" for i in range(count)]

    started = time.perf_counter()

    def create(http: httpx.Client, system: str) -> str:
        if system.endswith("000"):
            log(f"keys: {system} after {time.perf_counter() - started:.0f} s")
        for attempt in range(5):
            answer = http.post(
                "/v1/keys", json={"system_ids": [system], "scopes": ["read", "write"]}
            )
            if answer.status_code == 201:
                return answer.json()["key"]
            time.sleep(1 + attempt)
        answer.raise_for_status()
        raise RuntimeError(f"POST /v1/keys answered {answer.status_code}")

    headers = {"Authorization": f"Bearer {admin_key}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=120) as http,
        ThreadPoolExecutor(4) as pool,
    ):
        keys = list(pool.map(lambda s: create(http, s), systems))
    return dict(zip(systems, keys, strict=True))


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open() as table:
        return [
            {
                "start": float(r["start"]),
                "route": r["route"],
                "status": int(r["status"]),
                "ms": float(r["ms"]),
                "partial": r["partial"] == "1",
            }
            for r in csv.DictReader(table)
        ]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _wait_healthy(url: str, admin_key: str, timeout_s: float = 240) -> float | None:
    started = time.time()
    headers = {"Authorization": f"Bearer {admin_key}"}
    while time.time() - started < timeout_s:
        try:
            answer = httpx.get(f"{url}/healthz", headers=headers, timeout=15)
            if answer.status_code == 200 and answer.json()["status"] == "ok":
                return round(time.time() - started, 1)
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return None


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "command": "python -m akasha_ray.bench fleet " + " ".join(sys.argv[2:]),
        "systems": args.systems,
        "users": args.users,
        "duration_s": args.duration,
        "stores": fleet_stack.describe(args.server_names),
        "load_average_before": _load_average(),
    }
    with fleet_stack.servers(args.server_names) as servers:
        settings = dict(SETTINGS)
        for server in servers.values():
            settings |= server.env
        log(f"servers up: {sorted(servers) or 'none'}; starting Akasha")
        keep_logs = out / "ray-logs" if args.out is not None else None
        with fleet_stack.own_akasha(settings, log, keep_logs) as stack:
            stack.servers = servers
            started = time.perf_counter()
            keys = create_keys(stack.url, stack.admin_key, args.systems)
            report["keys_created_s"] = round(time.perf_counter() - started, 1)
            log(f"{len(keys)} scoped keys in {report['keys_created_s']} s")
            _write_secret(out / "keys.json", json.dumps(keys))

            faults = fleet_faults.schedule(
                args.fault_names, args.duration, args.warmup, tail_s=args.stop_s + 30
            )
            injector = fleet_faults.Injector(stack, args.stop_s, log)
            faults_done = out / "faults.done"
            load_started = time.time() + 15  # the load process imports locust meanwhile
            load = subprocess.Popen(
                [
                    *(sys.executable, "-m", "akasha_ray.bench.fleet_load"),
                    *("--url", stack.url, "--keys", str(out / "keys.json"), "--out", str(out)),
                    *("--duration", str(args.duration), "--users", str(args.users)),
                    *("--hot-days", str(HOT_DAYS), "--start-at", str(load_started)),
                    *("--until", str(faults_done), "--until-bound-s", str(FAULTS_BOUND_S)),
                ],
                stdout=sys.stderr,
            )
            results: list[dict] = []
            done = threading.Event()

            def inject_all() -> None:
                try:
                    results.extend(injector.run(faults, load_started, done))
                finally:
                    time.sleep(TAIL_S)  # load after the last recovery, in its window
                    faults_done.touch()

            faulting = threading.Thread(target=inject_all, daemon=True)
            faulting.start()
            code = load.wait(timeout=args.duration + FAULTS_BOUND_S + 120)
            ended = time.time()
            done.set()
            faulting.join(timeout=fleet_faults.RECOVER_TIMEOUT_S + args.stop_s + 60)
            injector.close()
            if code != 0:
                raise RuntimeError(f"the load process exited with {code}")
            log("load done; waiting for health, then the audit")
            report["healthy_after_load_s"] = _wait_healthy(stack.url, stack.admin_key)
            load_report = json.loads((out / "load.json").read_text())
            rows = _rows(out / "requests.csv")
            fleet_faults.error_windows(rows, results, ended)
            acks, unknown = _jsonl(out / "acks.jsonl"), _jsonl(out / "unknown.jsonl")
            audit = Audit(stack.url, keys).run(acks, unknown)
    statuses = load_report["statuses"]
    report |= {
        "requests": load_report["requests"],
        "requests_per_s": load_report["requests_per_s"],
        "errors_by_status": {s: n for s, n in statuses.items() if not s.startswith("2")},
        "statuses": statuses,
        "5xx_not_503": sum(n for s, n in statuses.items() if s.startswith("5") and s != "503"),
        "no_answer": statuses.get("0", 0),
        "routes": load_report["routes"],
        "error_answers": load_report["error_answers"],
        "faults": [_rounded(r, load_report["started_at"]) for r in results],
        "audit": audit,
        "lost_writes": audit["lost_writes"],
        "load_average_after": _load_average(),
        "machine": stats.machine(),
    }
    return report


def _rounded(result: dict[str, Any], load_started: float) -> dict[str, Any]:
    """Fault times as seconds into the load rather than epoch seconds."""
    shown = dict(result)
    for name in ("injected_at", "resumed_at", "recovered_at"):
        if shown.get(name) is not None:
            shown[name.replace("_at", "_s_into_load")] = round(shown.pop(name) - load_started, 1)
    return shown


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = run(args, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="akasha-fleet-") as folder:
            report = run(args, Path(folder))
    print(json.dumps(report, indent=1))
    return 0
