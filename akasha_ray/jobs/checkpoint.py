"""Which chunks of an input a job has finished, kept on disk so a stopped job resumes; and the
time the job started, which records without `created_at` get (so a resumed job derives the same
memory ids)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path


class Checkpoint:
    def __init__(self, directory: Path, source: Path, chunk_size: int) -> None:
        stat = source.stat()
        # A changed file (size or mtime) or another chunking starts a fresh checkpoint.
        fingerprint = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{chunk_size}"
        name = hashlib.blake2b(fingerprint.encode(), digest_size=8).hexdigest()
        self.path = Path(directory) / f"ingest-{name}.json"
        self.done: set[int] = set()
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            self.done = set(saved["done"])
            self.started_at = datetime.fromisoformat(saved["started_at"])
        else:
            self.started_at = datetime.now(UTC)
            self._save()

    def mark(self, chunk: int) -> None:
        self.done.add(chunk)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump({"done": sorted(self.done), "started_at": self.started_at.isoformat()}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
