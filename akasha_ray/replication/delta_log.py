"""The change log one source region ships into another region's bucket, as a Delta Lake table.

`akasha-dr/log/<source>/` holds changes.SCHEMA rows, partitioned by stream. Each `ship` is ONE
Delta commit (atomic: a reader sees all of the batch or none) carrying `akasha.epoch`,
`akasha.source` and `akasha.lsn_ranges` in its commit metadata, and one app transaction per
stream (`akasha:<source>:<stream>`, version = the stream's last LSN in the table).

Why a re-sent batch is harmless: before committing, rows at or below their stream's transaction
version are dropped, and the commit is made with no automatic rebase (`max_commit_retries=0`):
if another writer committed in between, delta-rs refuses ours and we start again from the new
table state, so the filter always ran against the version we commit on top of. A shipper that
crashed between the commit and `mark_shipped` re-sends the same rows: nothing is committed.

Paths in the Delta log are relative, so a copied table folder stays readable. `compact`
drops what a snapshot covers; the app transaction versions survive it (and any optimize).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaProtocolError, SchemaMismatchError, TableNotFoundError

from akasha_ray.errors import Conflict
from akasha_ray.replication import changes
from akasha_ray.replication.bucket import Bucket, retry

ROOT = "akasha-dr/log"
SETTLED = timedelta(minutes=1)  # past this, no commit stamped earlier can still be landing
STREAM = re.compile(r"[a-z0-9][a-z0-9-]*")  # checked before a name goes into a predicate


class LogGap(Conflict):
    """A batch would leave a hole in a stream the table already holds: a shipper bug, loud."""

    code = "log_gap"


class DeltaLog:
    def __init__(self, bucket: Bucket, source_region: str) -> None:
        self.bucket = bucket
        self.source = source_region
        self.uri = bucket.table_uri(ROOT, source_region)
        self._table: DeltaTable | None = None
        self._as_of: tuple[datetime, DeltaTable | None] | None = None
        self._lock = threading.Lock()  # one DeltaTable object, updated in place

    def app_id(self, stream: str) -> str:
        return f"akasha:{self.source}:{stream}"

    def ship(self, rows: pa.Table, epoch: int) -> dict[str, int]:
        """Commit `rows` (changes.SCHEMA) in one Delta commit; returns {stream: last LSN held}
        for the streams of the batch. Rows the table already holds are skipped; when none are
        left nothing is committed."""
        rows = _conform(rows)
        if rows.num_rows and pc.max(rows["epoch"]).as_py() > epoch:
            raise ValueError(f"rows carry an epoch above the shipment's ({epoch})")
        rows = rows.sort_by([("stream", "ascending"), ("lsn", "ascending")])
        _check_unique(rows)
        with self._lock:
            return retry(
                lambda: self._ship_once(rows, epoch),
                transient=_transient,
                backoff=self.bucket.backoff,
                what=f"shipping {rows.num_rows} changes to {self.uri} ({self.bucket.describe()})",
                on_retry=lambda _: self._forget(),
            )

    def versions(self) -> dict[str, int]:
        """{stream: last LSN} the table holds (its app transaction versions)."""
        with self._lock:
            table = self._load()
            if table is None:
                return {}
            streams = {p["stream"] for p in table.partitions()}
            return {s: self._version(table, s) for s in sorted(streams)}

    def version(self, stream: str) -> int:
        """The last LSN of `stream` the table holds, 0 when none."""
        with self._lock:
            table = self._load()
            return 0 if table is None else self._version(table, stream)

    def read(self, after: Mapping[str, int] | None = None, limit: int | None = None) -> pa.Table:
        """Rows beyond `after` ({stream: lsn}, 0 when absent), by stream then LSN."""
        with self._lock:
            table = self._load()
            return _rows(table, after or {}, limit)

    def read_as_of(
        self, at: datetime, after: Mapping[str, int] | None = None, limit: int | None = None
    ) -> pa.Table:
        """`read` against the table as it was at `at`: its last commit made at or before it,
        by the commits' own timestamps (delta-rs would go by the log objects' modification
        times, which S3 stores to the second). Empty when the table did not exist yet."""
        if at.tzinfo is None:
            raise ValueError("read_as_of needs a timezone-aware time")
        with self._lock:
            if self._as_of is not None and self._as_of[0] == at:
                table = self._as_of[1]  # a restore reads in many calls: resolve `at` once
            else:
                table = self._version_at(at)
                # A commit stamped before `at` may still be landing when `at` is recent.
                if datetime.now(UTC) - at > SETTLED:
                    self._as_of = (at, table)
            return _rows(table, after or {}, limit)

    def _version_at(self, at: datetime) -> DeltaTable | None:
        table = self._open()
        if table is None:
            return None
        limit_ms = at.timestamp() * 1000
        made = [c["version"] for c in table.history() if c["timestamp"] <= limit_ms]
        if not made:
            return None
        table.load_as_version(max(made))
        return table

    def last_commit(self) -> dict[str, Any] | None:
        """The latest commit's version, time, epoch and LSN ranges (for status)."""
        with self._lock:
            table = self._load()
            if table is None:
                return None
            info = table.history(1)[0]
        return {
            "version": info["version"],
            "at": datetime.fromtimestamp(info["timestamp"] / 1000, UTC),
            "epoch": int(info["akasha.epoch"]) if "akasha.epoch" in info else None,
            "lsn_ranges": json.loads(info.get("akasha.lsn_ranges", "{}")),
        }

    def compact(self, through: Mapping[str, int], *, keep_hours: int = 168) -> dict[str, int]:
        """Drop the rows at or below `through` ({stream: lsn}: what a snapshot covers), merge
        small files, and delete files that no version of the last `keep_hours` reads (so
        `read_as_of` reaches back that far). Each stream keeps its last row, so `versions()`
        still lists it. Safe to repeat."""
        bad = [name for name in through if not STREAM.fullmatch(name)]
        if bad:
            raise ValueError(f"not stream names: {bad}")
        with self._lock:
            return retry(
                lambda: self._compact_once(through, keep_hours),
                transient=_transient,
                backoff=self.bucket.backoff,
                what=f"compacting {self.uri} ({self.bucket.describe()})",
                on_retry=lambda _: self._forget(),
            )

    # Internals

    def _compact_once(self, through: Mapping[str, int], keep_hours: int) -> dict[str, int]:
        table = self._load()
        if table is None:
            return {"deleted_rows": 0, "files_merged": 0, "files_removed": 0}
        clauses = []
        for name, lsn in sorted(through.items()):
            upto = min(int(lsn), self._version(table, name) - 1)
            if upto >= 1:
                clauses.append(f"(stream = '{name}' AND lsn <= {upto})")
        deleted = 0
        if clauses:
            deleted = table.delete(" OR ".join(clauses)).get("num_deleted_rows", 0)
        merged = table.optimize.compact().get("numFilesRemoved", 0)
        removed = table.vacuum(
            retention_hours=keep_hours, dry_run=False, enforce_retention_duration=False
        )
        table.update_incremental()
        return {"deleted_rows": deleted, "files_merged": merged, "files_removed": len(removed)}

    def _ship_once(self, rows: pa.Table, epoch: int) -> dict[str, int]:
        table = self._load()
        held: dict[str, int] = {}
        keep = []
        for stream in pc.unique(rows["stream"]).to_pylist():
            held[stream] = 0 if table is None else self._version(table, stream)
            mine = rows.filter(pc.equal(rows["stream"], stream))
            mine = mine.filter(pc.greater(mine["lsn"], held[stream]))
            if mine.num_rows:
                first = mine["lsn"][0].as_py()
                if held[stream] and first != held[stream] + 1:
                    raise LogGap(
                        f"{self.uri}: stream {stream} holds LSNs up to {held[stream]}, "
                        f"the batch starts at {first}"
                    )
                keep.append(mine)
        if not keep:
            return held
        batch = pa.concat_tables(keep)
        ranges = {t["stream"][0].as_py(): [t["lsn"][0].as_py(), t["lsn"][-1].as_py()] for t in keep}
        properties = CommitProperties(
            custom_metadata={
                "akasha.epoch": str(epoch),
                "akasha.source": self.source,
                "akasha.lsn_ranges": json.dumps(ranges, sort_keys=True),
            },
            app_transactions=[Transaction(self.app_id(s), last) for s, (_, last) in ranges.items()],
            max_commit_retries=0,  # no silent rebase: see the module's docstring
        )
        write_deltalake(
            table if table is not None else self.uri,
            batch,
            mode="append",
            partition_by=["stream"],
            storage_options=self.bucket.storage_options,
            commit_properties=properties,
        )
        if table is None:
            self._table = self._open()
        else:
            table.update_incremental()
        return held | {s: last for s, (_, last) in ranges.items()}

    def _version(self, table: DeltaTable, stream: str) -> int:
        return table.transaction_version(self.app_id(stream)) or 0

    def _load(self) -> DeltaTable | None:
        """The table at its latest version (read incrementally after the first load)."""
        if self._table is None:
            self._table = self._open()
        else:
            self._table.update_incremental()
        return self._table

    def _open(self) -> DeltaTable | None:
        def load() -> DeltaTable | None:
            try:
                return DeltaTable(self.uri, storage_options=self.bucket.storage_options)
            except TableNotFoundError:
                return None

        return retry(
            load,
            transient=_transient,
            backoff=self.bucket.backoff,
            what=f"reading {self.uri} ({self.bucket.describe()})",
        )

    def _forget(self) -> None:
        self._table = None


def _conform(rows: pa.Table) -> pa.Table:
    missing = set(changes.SCHEMA.names) - set(rows.column_names)
    if missing:
        raise ValueError(f"change rows lack columns {sorted(missing)}")
    return rows.select(changes.SCHEMA.names).cast(changes.SCHEMA)


def _check_unique(rows: pa.Table) -> None:
    """Sorted rows: each stream's LSNs strictly increasing (no repeats)."""
    if rows.num_rows < 2:
        return
    same = pc.equal(rows["stream"][1:], rows["stream"][:-1])
    repeat = pc.and_(same, pc.less_equal(rows["lsn"][1:], rows["lsn"][:-1]))
    if pc.any(repeat).as_py():
        raise ValueError("change rows repeat a (stream, lsn)")


def _rows(table: DeltaTable | None, after: Mapping[str, int], limit: int | None) -> pa.Table:
    """Rows beyond `after`, by stream then LSN, at most `limit`.

    With a limit, files are read stream by stream in the order of their lowest LSN (from the
    Delta log's statistics) until the limit is reached, so a reader far behind (a restore, a
    catching-up secondary) reads about `limit` rows per call, not the whole remaining log.
    Files of one stream may overlap in LSNs (after a compaction): every file whose lowest LSN
    is at or below the limit's cut-off LSN is read."""
    if table is None:
        return changes.SCHEMA.empty_table()
    stream, lsn = ds.field("stream"), ds.field("lsn")
    wanted = ~stream.isin(list(after)) if after else None
    for name, last in after.items():
        beyond = (stream == name) & (lsn > last)
        wanted = beyond if wanted is None else wanted | beyond
    dataset = table.to_pyarrow_dataset()
    if limit is None:
        found = dataset.to_table(filter=wanted)
    else:
        found = _first_rows(table, dataset, wanted, limit)
    found = found.sort_by([("stream", "ascending"), ("lsn", "ascending")])
    if limit is not None:
        found = found.slice(0, limit)
    return _conform(found)


def _first_rows(
    table: DeltaTable, dataset: ds.Dataset, wanted: ds.Expression | None, limit: int
) -> pa.Table:
    actions = pa.table(table.get_add_actions(flatten=True))
    if "min.lsn" not in actions.column_names:  # no statistics: read it all
        return dataset.to_table(filter=wanted)
    lowest = dict(zip(actions["path"].to_pylist(), actions["min.lsn"].to_pylist(), strict=True))
    fragments = list(dataset.get_fragments(filter=wanted))
    if any(lowest.get(f.path) is None for f in fragments):  # a path not matched, or no stats
        return dataset.to_table(filter=wanted)
    by_stream: dict[str, list[ds.Fragment]] = {}
    for fragment in fragments:
        name = ds.get_partition_keys(fragment.partition_expression)["stream"]
        by_stream.setdefault(name, []).append(fragment)
    parts: list[pa.Table] = []
    taken = 0
    for name in sorted(by_stream):
        if taken >= limit:
            break
        need, mine, cut = limit - taken, [], None
        for fragment in sorted(by_stream[name], key=lambda f: lowest[f.path]):
            if cut is not None and lowest[fragment.path] > cut:
                break  # sorted by lowest LSN: no later file holds a row at or below the cut
            mine.append(fragment.to_table(filter=wanted, schema=dataset.schema))
            lsns = pa.concat_tables(mine)["lsn"]
            if len(lsns) >= need:  # the need-th lowest LSN: rows beyond it are not needed
                cut = lsns[pc.sort_indices(lsns)[need - 1].as_py()].as_py()
        parts.extend(mine)
        taken += min(sum(t.num_rows for t in mine), need)
    return pa.concat_tables(parts) if parts else dataset.schema.empty_table()


def _transient(exc: BaseException) -> bool:
    """What a retry may cure: object store errors, timeouts, a concurrent commit. Not a schema
    or protocol mismatch (a table someone else made), nor our own errors."""
    if isinstance(exc, SchemaMismatchError | DeltaProtocolError | TableNotFoundError):
        return False
    from deltalake.exceptions import DeltaError

    return isinstance(exc, DeltaError | OSError)
