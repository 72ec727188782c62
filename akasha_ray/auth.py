"""API keys: random bearer tokens, stored only as SHA-256 hashes, each scoped to systems.

Each key has a public `key_id` (for listing and revoking), may expire, and may be revoked. Only
the id and the hash are ever stored or logged; the plaintext is shown once, when it is created.
The one exception is a generated admin key, which is also written to `admin.key` (0600) so the
local CLI can find it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from akasha_ray.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound

ADMIN_KEY_FILE = "admin.key"
KEYS_FILE = "keys.json"
JOURNAL_FILE = "keys.journal"  # records changed since keys.json was written, one JSON a line
ADMIN_SCOPE = "admin"  # an admin key's only scope: it may do everything, on every system
KEY_ID_PATTERN = r"^kid_[0-9a-f]{16}$"
_RECORD_FIELDS = (
    "key_id",
    "hash",
    "system_ids",
    "scopes",
    "created_at",
    "expires_at",
    "revoked_at",
)


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "ak_" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    # 64 random bits: public, so it needs no secrecy, only no collisions among a store's keys.
    return "kid_" + secrets.token_hex(8)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or a key limited to some systems and scopes."""

    admin: bool
    system_ids: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset({"read", "write"})
    key_id: str | None = None
    expires_at: datetime | None = None

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

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "admin": self.admin,
            "system_ids": sorted(self.system_ids),
            "scopes": sorted(self.scopes),
            "key_id": self.key_id,
            "expires_at": _iso(self.expires_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        return cls(
            admin=data["admin"],
            system_ids=frozenset(data["system_ids"]),
            scopes=frozenset(data["scopes"]),
            key_id=data.get("key_id"),
            expires_at=_parse(data.get("expires_at")),
        )


class KeyStore:
    """Keys in `keys.json` plus a journal: each change appends the changed records (whole, one
    JSON object a line) to `keys.journal` and fsyncs it, so creating the ten-thousandth key
    costs what the first did. Once the journal would hold more lines than there are keys (and
    64), `keys.json` is replaced atomically with them all and the journal emptied. Loading
    replays the journal over `keys.json` (a record is a whole state: replaying one twice changes
    nothing), so a crash at any point keeps every change that returned.

    `version` changes with every change (and with every new store object, so an actor restart
    counts as one): ingress replicas compare it to drop the principals they cached.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / KEYS_FILE
        self._boot = secrets.token_hex(4)
        self._changes = 0
        self._keys: dict[str, dict[str, Any]] = {}  # key_id -> record
        self.journal = self.data_dir / JOURNAL_FILE
        self._journaled = 0
        text = read_private(self.path)
        if text is not None:
            self._keys, upgraded = _load(json.loads(text))
            if upgraded:
                self._save()
        for line in (read_private(self.journal) or "").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a crash mid-append: that change never returned
                continue
            self._keys[record["key_id"]] = record
            self._journaled += 1
        self._by_hash = {record["hash"]: key_id for key_id, record in self._keys.items()}

    @property
    def version(self) -> str:
        return f"{self._boot}-{self._changes}"

    def ensure_admin(self, configured: str | None) -> str | None:
        """Make sure exactly the right admin key is valid.

        With `configured` (AKASHA_ADMIN_KEY) that key becomes the only admin key: a generated one,
        or an earlier configured one, is revoked. Without it, an admin key is generated on first
        start (or when none is valid); the plaintext is returned only then, and also written to
        `admin.key` (0600) for the local CLI.
        """
        if configured:
            return self._configure_admin(configured)
        if self._active_admins():
            return None
        key = new_key()
        self._add(key, system_ids=[], scopes=[ADMIN_SCOPE], expires_at=None)
        write_private(self.data_dir / ADMIN_KEY_FILE, key + "\n")
        return key

    def _configure_admin(self, configured: str) -> None:
        wanted = hash_key(configured)
        key_id = self._by_hash.get(wanted)
        if key_id is None:
            key_id = self._add(configured, system_ids=[], scopes=[ADMIN_SCOPE], expires_at=None)
        record = self._keys[key_id]
        if record["scopes"] != [ADMIN_SCOPE]:
            raise ConfigError("AKASHA_ADMIN_KEY is a scoped API key; set a new random admin key")
        if record["revoked_at"] is not None:
            # Revoked on purpose (an earlier rotation): bringing it back could revive a leaked key.
            raise ConfigError("AKASHA_ADMIN_KEY is a revoked key; set a new random admin key")
        others = [k for k in self._active_admins() if k != key_id]
        if others:
            now = _iso(_now())
            for other in others:
                self._keys[other]["revoked_at"] = now
            self._save(others)
            self._remove_admin_file({self._keys[k]["hash"] for k in others})
        return None

    def _remove_admin_file(self, revoked_hashes: set[str]) -> None:
        """`admin.key` goes with the generated key it holds: a file of a dead key only misleads."""
        path = self.data_dir / ADMIN_KEY_FILE
        text = read_private(path)
        if text is not None and hash_key(text.strip()) in revoked_hashes:
            path.unlink()

    def create(
        self, system_ids: list[str], scopes: list[str], expires_at: datetime | None = None
    ) -> dict[str, Any]:
        """A new scoped key: its plaintext (the only time it exists outside the caller) and id."""
        if expires_at is not None and expires_at <= _now():
            raise InvalidInput("expires_at must be in the future", field="expires_at")
        key = new_key()
        key_id = self._add(
            key,
            system_ids=sorted(set(system_ids)),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        return {"key": key, **self._describe(self._keys[key_id])}

    def principal(self, key_hash: str, now: datetime | None = None) -> dict[str, Any] | None:
        """Who holds the key with this hash; None for an unknown, revoked or expired key."""
        key_id = self._by_hash.get(key_hash)
        if key_id is None:
            return None
        record = self._keys[key_id]
        if not _live(record, now or _now()):
            return None
        admin = record["scopes"] == [ADMIN_SCOPE]
        return Principal(
            admin=admin,
            system_ids=frozenset(record["system_ids"]),
            scopes=frozenset() if admin else frozenset(record["scopes"]),
            key_id=key_id,
            expires_at=_parse(record["expires_at"]),
        ).to_dict()

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key, revoked and expired ones included, oldest first; never a hash."""
        records = sorted(self._keys.values(), key=lambda r: (r["created_at"], r["key_id"]))
        return [self._describe(record) for record in records]

    def revoke(self, key_id: str) -> None:
        """Revoke a key for good. Revoking a revoked key changes nothing."""
        record = self._keys.get(key_id)
        if record is None:
            raise NotFound(f"no key {key_id}", field="key_id")
        if record["revoked_at"] is not None:
            return
        if record["scopes"] == [ADMIN_SCOPE] and self._active_admins() == [key_id]:
            raise Conflict(
                "this is the only valid admin key: set AKASHA_ADMIN_KEY to a new key and restart "
                "instead (that revokes this one)",
                field="key_id",
            )
        record["revoked_at"] = _iso(_now())
        self._save([key_id])

    def records(self) -> list[dict[str, Any]]:
        """Every record as stored (hashes, never keys), for a snapshot or a replica."""
        return [dict(record) for record in self._keys.values()]

    def adopt(self, record: dict[str, Any]) -> bool:
        """Take a record replicated from another region as it is (applying it twice is applying
        it once). A known key keeps its hash; only a revocation is taken over (the earliest), as
        a revoked key never comes back. True when something changed."""
        missing = {"key_id", "hash", "system_ids", "scopes", "created_at"} - record.keys()
        if missing:
            raise InvalidInput(f"a key record lacks {sorted(missing)}", field="record")
        held = self._keys.get(record["key_id"])
        if held is None:
            taken = {field: record.get(field) for field in _RECORD_FIELDS}
            self._keys[taken["key_id"]] = taken
            self._by_hash[taken["hash"]] = taken["key_id"]
        elif _earlier(record.get("revoked_at"), held["revoked_at"]):
            held["revoked_at"] = record["revoked_at"]
        else:
            return False
        self._save([record["key_id"]])
        return True

    def _add(
        self,
        key: str,
        *,
        system_ids: list[str],
        scopes: list[str],
        expires_at: datetime | None,
    ) -> str:
        key_id = new_key_id()
        while key_id in self._keys:
            key_id = new_key_id()
        record = {
            "key_id": key_id,
            "hash": hash_key(key),
            "system_ids": system_ids,
            "scopes": scopes,
            "created_at": _iso(_now()),
            "expires_at": _iso(expires_at),
            "revoked_at": None,
        }
        self._keys[key_id] = record
        self._by_hash[record["hash"]] = key_id
        self._save([key_id])
        return key_id

    def _active_admins(self) -> list[str]:
        now = _now()
        return [
            key_id
            for key_id, record in self._keys.items()
            if record["scopes"] == [ADMIN_SCOPE] and _live(record, now)
        ]

    @staticmethod
    def _describe(record: dict[str, Any]) -> dict[str, Any]:
        expires_at = _parse(record["expires_at"])
        return {
            "key_id": record["key_id"],
            "system_ids": list(record["system_ids"]),
            "scopes": list(record["scopes"]),
            "created_at": record["created_at"],
            "expires_at": record["expires_at"],
            "expired": expires_at is not None and _now() >= expires_at,
            "revoked": record["revoked_at"] is not None,
            "revoked_at": record["revoked_at"],
        }

    def _save(self, changed: list[str] | None = None) -> None:
        """Make a change durable: the `changed` records appended to the journal, or (None, or a
        journal as long as the store) every record written to keys.json."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        journal_ok = changed is not None and self.path.exists()
        if journal_ok and self._journaled + len(changed) <= max(len(self._keys), 64):
            lines = "".join(json.dumps(self._keys[k]) + "\n" for k in changed)
            append_private(self.journal, lines)
            self._journaled += len(changed)
        else:
            write_private(self.path, json.dumps({"keys": list(self._keys.values())}, indent=1))
            write_private(self.journal, "")  # after the snapshot that holds its records
            self._journaled = 0
        self._changes += 1


class PrincipalCache:
    """An ingress replica's verified keys, dropped whenever the key store's version moves.

    The replica asks the keys actor for the version at most every `check_every_s` (one request
    claims each check, the others go on meanwhile), so a revoked key is refused within that
    interval plus one call. A lookup answered under another version than the one held is used
    for its request but not kept: a lookup that raced a revocation cannot outlive it.
    """

    def __init__(self, check_every_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._version: str | None = None
        self._entries: dict[str, Principal] = {}

    def check_due(self) -> bool:
        """True once per interval: the caller then fetches the version and calls `observe`."""
        now = self._clock()
        if now - self._checked_at < self.check_every_s:
            return False
        self._checked_at = now
        return True

    def observe(self, version: str) -> None:
        if version != self._version:
            self._entries.clear()
            self._version = version

    def get(self, key_hash: str) -> Principal | None:
        return self._entries.get(key_hash)

    def put(self, key_hash: str, principal: Principal, version: str) -> None:
        if version == self._version:
            self._entries[key_hash] = principal


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), atomically, never through a symlink.

    The temp file is created with O_CREAT | O_EXCL | O_NOFOLLOW, so a file or link planted under
    its name is an error rather than a target; the rename then replaces whatever is at `path`
    (a symlink included) instead of writing through it. Fsyncs make the new content durable.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def append_private(path: Path, text: str) -> None:
    """Append to a file readable by its owner only (0600, created so), never through a symlink,
    and fsync it (a new file's folder too)."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    if created:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_private(path: Path) -> str | None:
    """A key file's text, or None when it does not exist; a symlink there is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link; key files must be plain files") from None
        raise
    with os.fdopen(fd) as source:
        return source.read()


def read_admin_key(data_dir: Path) -> str | None:
    text = read_private(Path(data_dir) / ADMIN_KEY_FILE)
    return text.strip() if text is not None else None


def _load(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], bool]:
    """The records by key_id, and whether they came from the first format (hash -> record)."""
    if "keys" in data and isinstance(data["keys"], list):
        return {record["key_id"]: record for record in data["keys"]}, False
    records = {}
    for key_hash, old in data.items():
        key_id = new_key_id()
        records[key_id] = {
            "key_id": key_id,
            "hash": key_hash,
            "system_ids": [] if old["admin"] else old["system_ids"],
            "scopes": [ADMIN_SCOPE] if old["admin"] else old["scopes"],
            "created_at": old["created_at"],
            "expires_at": None,
            "revoked_at": None,
        }
    return records, True


def _earlier(revoked_at: str | None, held: str | None) -> bool:
    """Whether a replicated revocation time should replace the one held (None: not revoked)."""
    if revoked_at is None:
        return False
    return held is None or _parse(revoked_at) < _parse(held)


def _live(record: dict[str, Any], now: datetime) -> bool:
    if record["revoked_at"] is not None:
        return False
    expires_at = _parse(record["expires_at"])
    return expires_at is None or now < expires_at


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
