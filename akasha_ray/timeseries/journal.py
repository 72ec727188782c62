"""The metrics writer's write-ahead journal: a 202 from `POST /v1/metrics` means the points are on
this node's disk (fsynced), not only in the `timeseries` actor's memory.

Each accepted batch is appended as one framed record (length, CRC32, Arrow IPC payload) by
`append` (synchronous, so records are numbered in the order of the calls), and `durable` returns
once the file is fsynced through it; appends that arrive while an fsync runs share the next one
(group commit), so many small writes cost one fsync each round, not one each. Before the
batcher hands a range of entries to the store it records that range with the write's token
(`flushing`), and once the store has them, `flushed`. After a crash, `recover` returns what the
store may lack: the range in flight with its token (the store skips a token it holds, so a range
that had been committed is not stored twice) and every entry after it.

Segments: the journal is a series of files `<n>.wal`; a new one starts once the current one
exceeds `segment_bytes`, and a segment is deleted once every entry in it is flushed. A torn record
at the end of the last segment (a crash during an append, which therefore was not acknowledged)
is cut off on recovery.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from akasha_ray.timeseries.batch import PointBatch

_HEADER = struct.Struct("<II")  # payload length, CRC32 of the payload
_ENTRY, _FLUSHING, _FLUSHED = b"E", b"F", b"D"
_SEQ = struct.Struct("<Q")
_RANGE = struct.Struct("<QQ")
SEGMENT_BYTES = 16 * 1024 * 1024
Mark = tuple[int, int]  # (segment number, bytes written to it)


@dataclass
class Recovered:
    """What a journal held that the store may lack, in order."""

    in_flight: tuple[int, int, str] | None = None  # (first seq, last seq, token)
    entries: list[tuple[int, PointBatch]] = field(default_factory=list)  # (seq, points)


class PointJournal:
    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self._fd = -1
        self._segment = 0
        self._segments: list[tuple[int, int]] = []  # (segment number, its highest entry seq)
        self._next_seq = 1
        self._flushed_seq = 0
        self._written = 0  # bytes appended to the current segment
        self._synced = 0  # bytes of it known to be on disk
        self._syncing: asyncio.Future[None] | None = None

    # -- opening and recovery --------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read every segment, cut a torn tail, and open a fresh segment for appends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        numbers = sorted(int(p.stem) for p in self.folder.glob("*.wal") if p.stem.isdigit())
        entries: dict[int, PointBatch] = {}
        in_flight: tuple[int, int, str] | None = None
        for number in numbers:
            highest = 0
            for kind, body in self._records(self._path(number), last=number == numbers[-1]):
                if kind == _ENTRY:
                    seq = _SEQ.unpack_from(body)[0]
                    entries[seq] = PointBatch(_read_table(body[_SEQ.size :]))
                    highest = max(highest, seq)
                    self._next_seq = max(self._next_seq, seq + 1)
                elif kind == _FLUSHING:
                    first, last = _RANGE.unpack_from(body)
                    in_flight = (first, last, body[_RANGE.size :].decode())
                elif kind == _FLUSHED:
                    self._flushed_seq = max(self._flushed_seq, _SEQ.unpack_from(body)[0])
            self._segments.append((number, highest))
        if in_flight is not None and in_flight[1] <= self._flushed_seq:
            in_flight = None
        self._segment = (numbers[-1] + 1) if numbers else 1
        self._open_segment()
        pending = [(s, b) for s, b in sorted(entries.items()) if s > self._flushed_seq]
        return Recovered(in_flight, pending)

    def _records(self, path: Path, last: bool):
        data = path.read_bytes()
        at = 0
        while at + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, at)
            body = data[at + _HEADER.size : at + _HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc or not body:
                break
            yield body[:1], body[1:]
            at += _HEADER.size + length
        if at < len(data):
            if not last:  # only the newest segment can end in a torn append
                raise OSError(f"metrics journal {path} is damaged at byte {at}")
            with path.open("r+b") as file:  # never acknowledged: cut it off
                file.truncate(at)
                os.fsync(file.fileno())

    # -- appends ---------------------------------------------------------------------------------

    def append(self, batch: PointBatch) -> tuple[int, Mark]:
        """Write the batch (not yet durable: see `durable`); returns its sequence number and
        the mark to pass to `durable`. Sequence numbers follow the calls' order."""
        seq = self._next_seq
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.table.schema) as writer:
            writer.write_table(batch.table)
        self._append(_frame(_ENTRY + _SEQ.pack(seq) + sink.getvalue().to_pybytes()))
        self._next_seq += 1
        number, highest = self._segments[-1]
        self._segments[-1] = (number, max(highest, seq))
        return seq, (self._segment, self._written)

    async def durable(self, mark: Mark) -> None:
        """Return once everything appended up to `mark` is on disk."""
        segment, offset = mark
        await self._sync_through(segment, offset)
        await self._roll_over_if_full()

    async def flushing(self, first: int, last: int, token: str) -> None:
        """The entries first..last go to the store under `token` (on disk before they go)."""
        await self._write(_FLUSHING + _RANGE.pack(first, last) + token.encode())

    async def flushed(self, last: int) -> None:
        """Every entry up to `last` is in the store: segments wholly before it are deleted."""
        self._flushed_seq = max(self._flushed_seq, last)
        done = [n for n, highest in self._segments if highest <= last and n != self._segment]
        if not done:  # not synced: lost, it only makes a recovery re-send under the same token
            self._append(_frame(_FLUSHED + _SEQ.pack(last)))
            return
        await self._write(_FLUSHED + _SEQ.pack(last))  # on disk before any entry goes
        for number in done:
            self._path(number).unlink(missing_ok=True)
        self._segments = [s for s in self._segments if s[0] not in done]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def _write(self, body: bytes) -> None:
        self._append(_frame(body))
        await self.durable((self._segment, self._written))

    async def _roll_over_if_full(self) -> None:
        if self._written >= self.segment_bytes:
            await self._sync_through(self._segment, self._written)  # all of it, then a new one
            if self._syncing is None and self._synced >= self._written:
                os.close(self._fd)
                self._segment += 1
                self._open_segment()

    def _append(self, frame: bytes) -> None:
        # O_APPEND and one write call: no other append interleaves. A failed or short write is
        # cut off, so that no torn record sits before the next one.
        try:
            wrote = os.write(self._fd, frame)
            if wrote != len(frame):
                raise OSError(f"short write to the metrics journal ({wrote} of {len(frame)})")
        except OSError:
            os.ftruncate(self._fd, self._written)
            raise
        self._written += len(frame)

    async def _sync_through(self, segment: int, offset: int) -> None:
        # Concurrent callers share one fdatasync at a time. The sync task itself records what
        # it made durable and clears `_syncing` before it completes: when the caller that
        # started it did that after its await, a caller woken first found the finished future
        # still there, awaited it without yielding and spun forever (the actor stopped
        # answering under the 10,000-system fleet load).
        while self._segment == segment and self._synced < offset:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync(self._written, self._fd))
            await asyncio.shield(self._syncing)

    async def _sync(self, upto: int, fd: int) -> None:
        try:
            await asyncio.to_thread(os.fdatasync, fd)
            self._synced = max(self._synced, upto)
        finally:
            self._syncing = None

    def _open_segment(self) -> None:
        path = self._path(self._segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._written = self._synced = 0
        self._segments.append((self._segment, 0))
        folder = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder)  # the new file's name is durable before anything in it counts
        finally:
            os.close(folder)

    def _path(self, number: int) -> Path:
        return self.folder / f"{number:012d}.wal"


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _read_table(payload: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        return reader.read_all()
