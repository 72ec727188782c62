"""Which chunks of an input a job has finished, kept on disk so a stopped job resumes."""

from __future__ import annotations

import hashlib
import json
import os
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
            self.done = set(json.loads(self.path.read_text())["done"])

    def mark(self, chunk: int) -> None:
        self.done.add(chunk)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump({"done": sorted(self.done)}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
