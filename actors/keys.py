"""The `keys` actor: sole owner of the API key file, so every ingress replica sees new keys."""

from __future__ import annotations

import logging
from pathlib import Path

from akasha_ray.auth import ADMIN_KEY_FILE, KeyStore

logger = logging.getLogger("akasha.keys")


class KeysActor:
    def __init__(self, data_dir: str) -> None:
        self._store = KeyStore(Path(data_dir))

    def data_dir(self) -> str:
        return str(self._store.data_dir)

    def ensure_admin(self, configured: str | None) -> str | None:
        generated = self._store.ensure_admin(configured)
        if generated:
            path = self._store.data_dir / ADMIN_KEY_FILE
            logger.warning("generated the admin API key; it is in %s (mode 0600)", path)
        return generated

    def create(self, system_ids: list[str], scopes: list[str]) -> str:
        return self._store.create(system_ids, scopes)

    def principal(self, key_hash: str) -> dict | None:
        return self._store.principal(key_hash)
