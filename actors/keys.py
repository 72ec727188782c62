"""The `keys` actor: sole owner of the API key file, so every ingress replica sees new keys."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from akasha_ray.auth import ADMIN_KEY_FILE, KeyStore
from akasha_ray.observability import carries_request_id, json_logs

# Only key ids go into these lines: never a key, never a hash.
logger = logging.getLogger("akasha.keys")


class KeysActor:
    def __init__(self, data_dir: str) -> None:
        self._store = KeyStore(Path(data_dir))
        json_logs()  # with the request id the ingress passes to create and revoke

    def data_dir(self) -> str:
        return str(self._store.data_dir)

    def version(self) -> str:
        """Changes with every key change: ingress replicas drop their cached principals then."""
        return self._store.version

    def ensure_admin(self, configured: str | None) -> str | None:
        before = {k["key_id"] for k in self._store.list_keys() if not k["revoked"]}
        generated = self._store.ensure_admin(configured)
        after = {k["key_id"] for k in self._store.list_keys() if not k["revoked"]}
        for key_id in sorted(before - after):
            logger.warning("revoked admin key %s: AKASHA_ADMIN_KEY names another key", key_id)
        if generated:
            path = self._store.data_dir / ADMIN_KEY_FILE
            logger.warning("generated the admin API key; it is in %s (mode 0600)", path)
        return generated

    @carries_request_id
    def create(
        self, system_ids: list[str], scopes: list[str], expires_at: datetime | None = None
    ) -> dict[str, Any]:
        created = self._store.create(system_ids, scopes, expires_at)
        logger.info(
            "created key %s (scopes %s, %d system(s), expires %s)",
            created["key_id"],
            ",".join(created["scopes"]),
            len(created["system_ids"]),
            created["expires_at"] or "never",
        )
        return created

    def list_keys(self) -> list[dict[str, Any]]:
        return self._store.list_keys()

    @carries_request_id
    def revoke(self, key_id: str) -> None:
        self._store.revoke(key_id)
        logger.info("revoked key %s", key_id)

    def records(self) -> list[dict[str, Any]]:
        """Every record with its hash (for DR snapshots; never logged)."""
        return self._store.records()

    def adopt(self, record: dict[str, Any]) -> bool:
        """Take a record replicated from another region as it is (see KeyStore.adopt)."""
        changed = self._store.adopt(record)
        if changed:
            logger.info("adopted key %s from a replica", record["key_id"])
        return changed

    def principal(self, key_hash: str) -> tuple[dict[str, Any] | None, str]:
        """Who holds this key (None: unknown, revoked or expired), and the version read at."""
        return self._store.principal(key_hash), self._store.version
