"""The `keys` actor: sole owner of the API key file, so every ingress replica sees new keys."""

from __future__ import annotations

from pathlib import Path

from akasha_ray.auth import KeyStore


class KeysActor:
    def __init__(self, data_dir: str) -> None:
        self._store = KeyStore(Path(data_dir))

    def data_dir(self) -> str:
        return str(self._store.data_dir)

    def ensure_admin(self, configured: str | None) -> str | None:
        return self._store.ensure_admin(configured)

    def create(self, system_ids: list[str], scopes: list[str]) -> str:
        return self._store.create(system_ids, scopes)

    def principal(self, key_hash: str) -> dict | None:
        return self._store.principal(key_hash)
