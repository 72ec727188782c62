"""Time-ordered identifiers (UUIDv7, RFC 9562)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import datetime


def _uuid7(unix_ms: int, rand: bytes) -> str:
    """Lay out a UUIDv7: 48-bit millisecond timestamp, version 7, variant 10, 74 random bits."""
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(rand[:10], "big") & ((1 << 80) - 1)
    value &= ~(0xF << 76)
    value |= 0x7 << 76
    value &= ~(0x3 << 62)
    value |= 0x2 << 62
    return str(uuid.UUID(int=value))


def new_id() -> str:
    """A fresh UUIDv7 for now."""
    return _uuid7(time.time_ns() // 1_000_000, os.urandom(10))


def stable_id(created_at: datetime, *parts: str) -> str:
    """A UUIDv7 derived from content, so re-ingesting the same record yields the same id.

    The timestamp part keeps ids time-ordered; the rest is a hash of `parts`.
    """
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).digest()
    return _uuid7(int(created_at.timestamp() * 1000), digest)
