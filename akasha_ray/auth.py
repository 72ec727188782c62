"""API keys: random bearer tokens, stored only as SHA-256 hashes, each scoped to systems."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from akasha_ray.errors import Forbidden

ADMIN_KEY_FILE = "admin.key"
KEYS_FILE = "keys.json"


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "ak_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or a key limited to some systems and scopes."""

    admin: bool
    system_ids: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset({"read", "write"})

    def require(self, scope: str) -> None:
        if not self.admin and scope not in self.scopes:
            raise Forbidden(f"this key lacks the {scope!r} scope")

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("only the admin key may do this")

    def require_systems(self, system_ids: set[str] | list[str], field: str) -> None:
        if self.admin:
            return
        outside = sorted(set(system_ids) - self.system_ids)
        if outside:
            raise Forbidden(f"this key may not use system(s) {outside}", field=field)

    def may_see(self, system_id: str) -> bool:
        return self.admin or system_id in self.system_ids

    def to_dict(self) -> dict:
        return {
            "admin": self.admin,
            "system_ids": sorted(self.system_ids),
            "scopes": sorted(self.scopes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Principal:
        return cls(
            admin=data["admin"],
            system_ids=frozenset(data["system_ids"]),
            scopes=frozenset(data["scopes"]),
        )


class KeyStore:
    """Keys in one JSON file under the data dir, replaced atomically on every change."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / KEYS_FILE
        self._keys: dict[str, dict] = {}
        if self.path.exists():
            self._keys = json.loads(self.path.read_text())

    def ensure_admin(self, configured: str | None) -> str | None:
        """Register the configured admin key, or create one on first start.

        Returns the plaintext only when it was generated now; it is also written to
        `admin.key` (mode 0600) in the data dir so the local CLI can find it.
        """
        if configured:
            wanted = hash_key(configured)
            if self._keys.get(wanted, {}).get("admin"):
                return None
            self._keys = {h: k for h, k in self._keys.items() if k.get("source") != "config"}
            self._keys[wanted] = _record(admin=True, system_ids=[], scopes=[], source="config")
            self._save()
            return None
        if any(k["admin"] for k in self._keys.values()):
            return None
        key = new_key()
        record = _record(admin=True, system_ids=[], scopes=[], source="generated")
        self._keys[hash_key(key)] = record
        self._save()
        key_file = self.data_dir / ADMIN_KEY_FILE
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        return key

    def create(self, system_ids: list[str], scopes: list[str]) -> str:
        key = new_key()
        self._keys[hash_key(key)] = _record(
            admin=False, system_ids=sorted(set(system_ids)), scopes=sorted(set(scopes))
        )
        self._save()
        return key

    def principal(self, key_hash: str) -> dict | None:
        record = self._keys.get(key_hash)
        if record is None:
            return None
        return Principal(
            admin=record["admin"],
            system_ids=frozenset(record["system_ids"]),
            scopes=frozenset(record["scopes"]) if not record["admin"] else frozenset(),
        ).to_dict()

    def _save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self._keys, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def _record(*, admin: bool, system_ids: list[str], scopes: list[str], source: str = "api") -> dict:
    return {
        "admin": admin,
        "system_ids": system_ids,
        "scopes": scopes,
        "source": source,
        "created_at": datetime.now(UTC).isoformat(),
    }


def read_admin_key(data_dir: Path) -> str | None:
    path = Path(data_dir) / ADMIN_KEY_FILE
    return path.read_text().strip() if path.exists() else None
