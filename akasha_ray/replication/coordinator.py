"""The `region-<other>` coordinator's logic: ship this region's change log to another region's
bucket, or apply the primary's log from this region's bucket, and follow the witness.

Plain async code over its collaborators (the change log's methods, two Delta logs, the witness,
an applier), so tests run it against real local stores without Ray; `actors/region.py` owns one.

Failures are never swallowed: each is kept (message, when, since when, attempts) for
`/v1/dr/status` and `/healthz`, and the step is retried after an exponential backoff (capped).
A shipment re-sent after a failure whose commit did land is recognised by the Delta log's app
transaction versions and committed nothing twice; an apply is idempotent, so the same holds
there.

Fencing: every `witness_check_s` the coordinator reads the witness; a higher epoch is told to
the change log (`set_state`), which then refuses writes unless it names this region, and the
coordinator's duty follows (a deposed primary stops shipping at once). A region that was primary
and learns it no longer is ("deposed") applies nothing until `akasha dr rejoin`: its stores may
hold writes the new primary never got.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from akasha_ray.config import DrConfig
from akasha_ray.errors import AkashaError, Conflict
from akasha_ray.replication.regions import Duty, RegionsView

log = logging.getLogger(__name__)

# Changes per Delta commit: a memories change holds up to 1,000 rows with their vectors (about
# 1.6 MB), so 64 of them keep one shipment under about 100 MB.
MAX_CHANGES = 64
ASYNC_GATHER_S = 0.5  # async mode: how long new changes may wait to ship together
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 10.0
DEPOSED_FILE = "deposed.json"


class ChangeLogPort(Protocol):
    """The `changelog` actor's methods the coordinator uses (all awaited)."""

    async def wait_new(self, after: Mapping[str, int], timeout_s: float) -> bool: ...
    async def read(self, after: Mapping[str, int], limit: int) -> pa.Table: ...
    async def last(self) -> dict[str, int]: ...
    async def pending(self, after: Mapping[str, int]) -> tuple[int, datetime | None]: ...
    async def mark_shipped(self, region: str, versions: Mapping[str, int]) -> None: ...
    async def shipped(self) -> dict[str, dict[str, int]]: ...
    async def mark_applied(self, source: str, versions: Mapping[str, int]) -> None: ...
    async def applied(self, source: str) -> dict[str, int]: ...
    async def state(self) -> dict[str, Any]: ...
    async def set_state(self, epoch: int, primary: str) -> dict[str, Any]: ...


class DeltaLogPort(Protocol):
    """`DeltaLog` (blocking: called in a thread)."""

    def ship(self, changes: pa.Table, epoch: int) -> dict[str, int]: ...
    def versions(self) -> dict[str, int]: ...
    def read(self, after: Mapping[str, int], limit: int | None = None) -> pa.Table: ...


class WitnessPort(Protocol):
    """`Witness` (blocking: called in a thread)."""

    def read(self) -> Any: ...  # WitnessState(epoch, primary, etag) | None
    def init(self, primary: str) -> Any: ...
    def advance(self, expected: Any, new_primary: str) -> Any: ...


class ApplierPort(Protocol):
    async def apply(self, changes: pa.Table) -> dict[str, int]: ...


class AsyncPort:
    """Any object's methods as coroutines (a plain value is returned as is): lets the
    coordinator run against the changelog actor's class in a test, without Ray."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


@dataclass
class Failure:
    """The last error of a step, kept until a step succeeds."""

    message: str
    at: datetime
    since: datetime
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "at": self.at.isoformat(),
            "since": self.since.isoformat(),
            "attempts": self.attempts,
        }


@dataclass
class Progress:
    """What the coordinator knows of its own work, for status."""

    duty: Duty = "idle"
    versions: dict[str, int] = field(default_factory=dict)  # shipped there / applied here
    behind_since: datetime | None = None  # apply: oldest change read, not yet applied
    last_ok_at: datetime | None = None
    changes_moved: int = 0  # since this coordinator started
    error: Failure | None = None
    witness_error: Failure | None = None
    snapshot: dict[str, Any] | None = None  # the last snapshot's manifest summary
    snapshot_error: Failure | None = None


def backoff_s(attempts: int) -> float:
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _fail(previous: Failure | None, exc: BaseException) -> Failure:
    now = _now()
    if previous is None:
        return Failure(_describe(exc), now, now, 1)
    return Failure(_describe(exc), now, previous.since, previous.attempts + 1)


class Coordinator:
    """This region's coordinator for `other`."""

    def __init__(
        self,
        dr: DrConfig,
        other: str,
        log: ChangeLogPort,
        *,
        outbound: DeltaLogPort,  # other's bucket, the log of this region
        inbound: DeltaLogPort,  # this region's bucket, the log of `other`
        witness: WitnessPort,
        # `other`'s log in the other regions' buckets (the backup's...): a forced promotion
        # takes from them what this bucket lacks.
        elsewhere: Mapping[str, DeltaLogPort] | None = None,
        applier: Callable[[], ApplierPort] | None = None,  # made on first apply
        state_dir: Path | None = None,  # where `deposed.json` lives (data_dir/dr)
        max_changes: int = MAX_CHANGES,
    ) -> None:
        assert dr.region is not None and other != dr.region
        self.dr, self.other = dr, other
        self._log, self._outbound, self._inbound = log, outbound, inbound
        self._witness, self._make_applier = witness, applier
        self._elsewhere = dict(elsewhere or {})
        self._applier: ApplierPort | None = None
        self._state_dir = state_dir
        self._max_changes = max_changes
        self.view: RegionsView | None = None
        self.progress = Progress()
        self._witness_read_at = 0.0
        self._started_duty: Duty | None = None
        self._step_started = _now()
        self._reconciled = False  # the outbound table's versions read once per ship duty
        self._applying = asyncio.Lock()  # one apply at a time: the loop's, or a rejoin's

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: follow the witness, then do one step of the duty."""
        while True:
            await self.run_for(60.0)

    async def run_for(self, seconds: float) -> None:
        """Steps for about `seconds`; a failed step is kept for status and retried after a
        backoff."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.step()
            error = self.progress.error
            if error is not None and error.at >= self._step_started:
                await asyncio.sleep(backoff_s(error.attempts))

    async def step(self) -> int:
        """One round: the witness when due, then one shipment, one apply or an idle wait.
        Returns the changes moved; a failure is recorded, not raised."""
        self._step_started = _now()
        if time.monotonic() - self._witness_read_at >= self.dr.witness_check_s:
            await self.follow_witness()
        view = self.view
        if view is None:  # the witness never answered: nothing is safe to do
            await asyncio.sleep(min(self.dr.witness_check_s, 1.0))
            return 0
        duty = view.duty(self.other)
        if duty != self._started_duty:
            self.progress = Progress(
                duty=duty, error=None, witness_error=self.progress.witness_error
            )
            self._started_duty = duty
            self._reconciled = False
        try:
            if duty == "ship":
                moved = await self.ship_once(view.epoch)
            elif duty == "apply":
                async with self._applying:
                    moved = await self.apply_once()
            else:
                await asyncio.sleep(self.dr.ship_every_s)
                moved = 0
        except Exception as exc:  # noqa: BLE001 - kept for status and /healthz, retried by run()
            self.progress.error = _fail(self.progress.error, exc)
            log.warning("region %s: %s failed: %s", self.other, duty, _describe(exc))
            return 0
        self.progress.error = None
        self.progress.last_ok_at = _now()
        self.progress.changes_moved += moved
        return moved

    # -- the witness -------------------------------------------------------------------------

    async def follow_witness(self) -> RegionsView | None:
        """Read the witness (creating it at epoch 1 if absent), tell the change log when it
        names a newer epoch, and refresh the view. An unreadable witness keeps the last view
        (shipping goes on) and is kept as `witness_error`."""
        self._witness_read_at = time.monotonic()
        try:
            seen = await asyncio.to_thread(self._witness.read)
            if seen is None:
                configured = next(r.name for r in self.dr.regions if r.role == "primary")
                seen = await asyncio.to_thread(self._witness.init, configured)
            state = await self._log.state()
            # Only a newer epoch moves the log's state: a planned handover sets (same epoch,
            # the target) on the old primary, which the witness must not undo.
            if seen.epoch > state["epoch"]:
                # Deposed: it was primary and logged writes of its own the new primary may
                # lack (a fresh data dir, started to rejoin, logged none).
                if (
                    state["primary"] == self.dr.region
                    and seen.primary != self.dr.region
                    and await self._log.last()
                ):
                    self._mark_deposed(seen.epoch, seen.primary)
                state = await self._log.set_state(seen.epoch, seen.primary)
        except Exception as exc:  # noqa: BLE001 - kept for status; the last view stays
            self.progress.witness_error = _fail(self.progress.witness_error, exc)
            log.warning("region %s: witness unreadable: %s", self.other, _describe(exc))
            if self.view is None:  # at start: what the change log last learnt, if it answers
                self.view = await self._view_from_log()
            return self.view
        self.progress.witness_error = None
        self.view = RegionsView(
            self.dr, seen.epoch, seen.primary, fenced=self.deposed() is not None
        )
        return self.view

    async def _view_from_log(self) -> RegionsView | None:
        try:
            state = await self._log.state()
        except Exception:  # noqa: BLE001 - the witness error is the one reported; wait
            return None
        return RegionsView(
            self.dr, state["epoch"], state["primary"], fenced=self.deposed() is not None
        )

    def deposed(self) -> dict[str, Any] | None:
        """Set when this region learnt it is no longer primary; cleared by rejoin."""
        if self._state_dir is None:
            return None
        path = self._state_dir / DEPOSED_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _mark_deposed(self, epoch: int, primary: str) -> None:
        if self._state_dir is None:
            return
        self._state_dir.mkdir(parents=True, exist_ok=True)
        record = {"epoch": epoch, "primary": primary, "at": _now().isoformat()}
        tmp = self._state_dir / f".{DEPOSED_FILE}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(self._state_dir / DEPOSED_FILE)

    # -- shipping ----------------------------------------------------------------------------

    async def ship_once(self, epoch: int) -> int:
        """Wait (at most ship_every_s) for changes not yet shipped to `other`, commit up to
        MAX_CHANGES of them to its bucket in one Delta commit, and mark them shipped."""
        shipped = await self._shipped()
        if not await self._log.wait_new(shipped, self.dr.ship_every_s):
            return 0
        if self.dr.mode == "async":
            # Let a burst gather: one Delta commit per write costs the ingest it competes with
            # for CPU (bench dr); sync mode ships at once, a write is waiting for it.
            await asyncio.sleep(min(ASYNC_GATHER_S, self.dr.ship_every_s / 2))
        rows = await self._log.read(shipped, self._max_changes)
        if rows.num_rows == 0:  # compacted away under a snapshot: nothing to send
            return 0
        versions = await asyncio.to_thread(self._outbound.ship, rows, epoch)
        held = _last_per_stream(rows)
        merged = _max(shipped, held, versions)
        await self._log.mark_shipped(self.other, merged)
        self.progress.versions = merged
        return rows.num_rows

    async def _shipped(self) -> dict[str, int]:
        """How far `other`'s bucket holds this region's log: the change log's marks, or the
        Delta table's versions when a commit landed but its mark did not (first round only)."""
        marks = (await self._log.shipped()).get(self.other, {})
        if not self._reconciled:
            held = await asyncio.to_thread(self._outbound.versions)
            marks = _max(marks, held)
            if held:
                await self._log.mark_shipped(self.other, marks)
            self._reconciled = True
        self.progress.versions = _max(self.progress.versions, marks)
        return dict(self.progress.versions)

    # -- applying ----------------------------------------------------------------------------

    async def apply_once(self) -> int:
        """Apply up to MAX_CHANGES of `other`'s log that this region's bucket holds beyond what
        was applied; idle for ship_every_s when there is none."""
        applied = await self._log.applied(self.other)
        rows = await asyncio.to_thread(self._inbound.read, applied, self._max_changes)
        if rows.num_rows == 0:
            self.progress.behind_since = None
            self.progress.versions = dict(applied)
            await asyncio.sleep(self.dr.ship_every_s)
            return 0
        self.progress.behind_since = self.progress.behind_since or _oldest(rows)
        if self._applier is None:
            assert self._make_applier is not None, "a secondary's coordinator needs an applier"
            self._applier = self._make_applier()
        versions = await self._applier.apply(rows)
        merged = _max(applied, _last_per_stream(rows), versions)
        await self._log.mark_applied(self.other, merged)
        self.progress.versions = merged
        if rows.num_rows < self._max_changes:
            self.progress.behind_since = None
        return rows.num_rows

    async def catch_up(
        self, versions: Mapping[str, int] | None, timeout_s: float
    ) -> dict[str, Any]:
        """A promotion's catch-up, while the apply loop runs: wait until `other`'s log is
        applied here through `versions` (planned: what the old primary logged), or through
        what this region's bucket holds (forced: after copying into it what other buckets hold
        beyond it; sync mode answers once any other region's bucket has a write). Returns how
        far it got."""
        target = versions
        gathered: dict[str, Any] = {}
        if target is None:
            target, gathered = await asyncio.to_thread(self._gather_inbound)
        deadline = time.monotonic() + timeout_s
        while True:
            applied = await self._log.applied(self.other)
            done = all(applied.get(s, 0) >= n for s, n in target.items())
            if done or time.monotonic() >= deadline:
                error = self.progress.error
                return {
                    "caught_up": done,
                    "target": dict(target),
                    "gathered": gathered,
                    "applied": applied,
                    "last_error": error.to_json() if error else None,
                }
            await asyncio.sleep(0.05)

    def _gather_inbound(self) -> tuple[dict[str, int], dict[str, Any]]:
        """Copy into this region's bucket the part of `other`'s log that only other buckets
        hold (the same Delta commit rules: what is there already is skipped); what this
        bucket then holds, and per other bucket what was taken or why not."""
        from deltalake.exceptions import DeltaError

        held = self._inbound.versions()
        told: dict[str, Any] = {}
        for region, copy in self._elsewhere.items():
            try:
                theirs = copy.versions()
                if not any(n > held.get(s, 0) for s, n in theirs.items()):
                    told[region] = {"copied": 0}
                    continue
                rows = copy.read(held)
                if rows.num_rows:
                    self._inbound.ship(rows, max(rows.column("epoch").to_pylist()))
                told[region] = {"copied": rows.num_rows}
                held = self._inbound.versions()
            # An unreachable or unreadable bucket: promote with what the others hold.
            except (AkashaError, DeltaError, OSError, ValueError) as exc:
                told[region] = {"error": _describe(exc)}
        return held, told

    # -- snapshots and rejoin ----------------------------------------------------------------

    async def snapshot_if_due(
        self,
        latest: Callable[[], Awaitable[dict[str, Any] | None]],
        take: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any] | None:
        """On the primary, for the backup region: a snapshot of every store into its bucket
        when the newest is older than `snapshot_every_s` (or there is none of this region:
        right after a promotion, so a deposed region can rejoin from it). Errors are kept."""
        every = self.dr.snapshot_every_s
        view = self.view
        if every <= 0 or view is None or self.progress.duty != "ship":
            return None
        if view.role(self.other) != "backup":
            return None
        known = self.progress.snapshot
        if known is not None and _age(_time(known["finished_at"]), _now()) < every:
            return known
        try:
            newest = await latest()
            if newest is None or _age(_time(newest["finished_at"]), _now()) >= every:
                newest = await take()
        except Exception as exc:  # noqa: BLE001 - kept for status, tried again next time
            self.progress.snapshot_error = _fail(self.progress.snapshot_error, exc)
            log.warning("region %s: snapshot failed: %s", self.other, _describe(exc))
            return None
        self.progress.snapshot_error = None
        self.progress.snapshot = {
            k: newest.get(k) for k in ("id", "region", "epoch", "at", "finished_at", "versions")
        }
        return self.progress.snapshot

    async def rejoin(self, restore: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """A deposed region becomes a secondary of the primary again: `restore` (the primary's
        latest snapshot and its log after it, applied over what is held here) runs while this
        coordinator applies nothing; then the deposed mark goes and applying resumes from the
        versions the restore recorded."""
        view = await self.follow_witness()
        if view is None or view.is_primary or view.primary != self.other:
            raise Conflict(f"region {self.other} is not the primary: nothing to rejoin")
        async with self._applying:
            report = await restore()
            if self._state_dir is not None:
                (self._state_dir / DEPOSED_FILE).unlink(missing_ok=True)
        await self.follow_witness()
        return report

    # -- status ------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """This coordinator's part of `/v1/dr/status`: duty, how far, lag, errors."""
        view = self.view
        progress = self.progress
        out: dict[str, Any] = {
            "region": self.other,
            "role": view.role(self.other) if view else None,
            "duty": progress.duty,
            "epoch": view.epoch if view else None,
            "last_ok_at": _iso(progress.last_ok_at),
            "changes_moved": progress.changes_moved,
            "last_error": progress.error.to_json() if progress.error else None,
            "witness_error": progress.witness_error.to_json() if progress.witness_error else None,
            "deposed": self.deposed(),
        }
        if progress.snapshot is not None or progress.snapshot_error is not None:
            out["last_snapshot"] = progress.snapshot
            out["snapshot_error"] = (
                progress.snapshot_error.to_json() if progress.snapshot_error else None
            )
        now = _now()
        if progress.duty == "ship":
            shipped = (await self._log.shipped()).get(self.other, {})
            count, oldest = await self._log.pending(shipped)
            out["shipped"] = shipped
            out["lag_changes"] = count
            out["lag_s"] = _age(oldest, now)
        elif progress.duty == "apply":
            applied = await self._log.applied(self.other)
            out["applied"] = applied
            try:
                held = await asyncio.to_thread(self._inbound.versions)
            except Exception as exc:  # noqa: BLE001 - bucket down: lag unknown, say why
                out["lag_changes"] = None
                out["bucket_error"] = _describe(exc)
            else:
                out["received"] = held
                out["lag_changes"] = sum(max(0, n - applied.get(s, 0)) for s, n in held.items())
            out["lag_s"] = _age(progress.behind_since, now)
        else:
            out["lag_changes"] = 0
            out["lag_s"] = 0.0
        return out


def _oldest(rows: pa.Table) -> datetime:
    import pyarrow.compute as pc

    return pc.min(rows.column("at")).as_py()


def _last_per_stream(rows: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for stream, lsn in zip(
        rows.column("stream").to_pylist(), rows.column("lsn").to_pylist(), strict=True
    ):
        out[stream] = max(out.get(stream, 0), lsn)
    return out


def _max(*maps: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for stream, lsn in (m or {}).items():
            out[stream] = max(out.get(stream, 0), lsn)
    return out


def _age(then: datetime | None, now: datetime) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
