"""A small HTTP client for Akasha, used by the CLI, the notebooks and the benchmarks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from akasha_ray import config
from akasha_ray.auth import read_admin_key
from akasha_ray.models import MAX_BATCH

RETRY_AFTER_MAX_S = 60.0  # a longer Retry-After is waited as this long


class AkashaHTTPError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = response.text
        super().__init__(f"HTTP {response.status_code}: {self.body}")


class AkashaClient:
    """`url` (or AKASHA_URL) may name several regions, comma-separated: requests go to the
    first that answers, and a write refused with a 503 `not_primary` is sent again to the
    primary the error names (its URL), else to the next URL."""

    def __init__(self, url: str | None = None, key: str | None = None, timeout: float = 60):
        settings = config.load()
        given = url or os.environ.get("AKASHA_URL") or default_url(settings)
        self.urls = [u.strip().rstrip("/") for u in given.split(",") if u.strip()]
        if not self.urls:
            raise ValueError("no Akasha URL given")
        self.url = self.urls[0]
        self.key = key or os.environ.get("AKASHA_API_KEY") or read_admin_key(settings.data_dir)
        self._headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self._timeout = timeout
        self._http = self._connect(self.url)

    def _connect(self, url: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers=self._headers, timeout=self._timeout)

    def _switch(self, url: str | None = None) -> bool:
        """Talk to `url` (a primary an error named) or to the next URL; False: none left."""
        if url is None:
            if len(self.urls) < 2:
                return False
            url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
        url = url.rstrip("/")
        if url == self.url:
            return False
        if url not in self.urls:
            self.urls.append(url)
        self._http.close()
        self.url, self._http = url, self._connect(url)
        return True

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AkashaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def stats(self) -> dict[str, Any]:
        return self._json("GET", "/v1/stats")

    def tiers(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/tiers")["tiers"]

    def migration(self) -> dict[str, Any]:
        """The hot window in force, the schedule, and the last migration pass."""
        return self._json("GET", "/v1/tiers")["migration"]

    def migrate(self) -> dict[str, Any]:
        return self._json("POST", "/v1/tiers/migrate")["moved"]

    def ingest(
        self,
        memories: Iterable[dict[str, Any]],
        *,
        batch_size: int = 500,
        total: int | None = None,
        progress: bool = True,
    ) -> list[str]:
        """POST memories in batches (at most 1,000 a request), retrying brief outages.

        A memory without `created_at` gets one here, before the first attempt: the server derives
        its id from it, so a retried POST stores nothing twice."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        ids: list[str] = []
        with tqdm(total=total, unit="mem", desc="ingest", disable=not progress) as bar:
            for batch in _batches(memories, batch_size):
                now = datetime.now(UTC).isoformat()
                batch = [m if m.get("created_at") else {**m, "created_at": now} for m in batch]
                body = self._json("POST", "/v1/memories", json={"memories": batch}, retries=3)
                ids.extend(body["ids"])
                bar.update(len(batch))
        return ids

    def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        system_ids: Sequence[str] | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        limit: int = 10,
        include_cold: bool = False,
        mode: str | None = None,
    ) -> dict[str, Any]:
        """`mode`: vector, keyword or hybrid; None: the server's default (README, Search modes)."""
        body: dict[str, Any] = {"limit": limit, "include_cold": include_cold}
        if mode is not None:
            body["mode"] = mode
        if query is not None:
            body["query"] = query
        if vector is not None:
            body["vector"] = [float(x) for x in vector]
        if system_ids:
            body["system_ids"] = list(system_ids)
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                body[name] = value.isoformat() if isinstance(value, datetime) else value
        return self._json("POST", "/v1/search", json=body)

    def get(self, memory_id: str, system_id: str | None = None) -> dict[str, Any]:
        """A memory is (system_id, id); the system may be left out when the key holds one."""
        params = {"system_id": system_id} if system_id else None
        return self._json("GET", f"/v1/memories/{memory_id}", params=params)

    def delete(self, memory_id: str, system_id: str | None = None) -> None:
        params = {"system_id": system_id} if system_id else None
        self._json("DELETE", f"/v1/memories/{memory_id}", params=params)

    def create_key(
        self,
        system_ids: Sequence[str],
        scopes: Sequence[str],
        expires_at: datetime | str | None = None,
    ) -> str:
        body: dict[str, Any] = {"system_ids": list(system_ids), "scopes": list(scopes)}
        if expires_at is not None:
            body["expires_at"] = (
                expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
            )
        return self._json("POST", "/v1/keys", json=body)["key"]

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's id, systems, scopes, dates and state (admin only); never a key."""
        return self._json("GET", "/v1/keys")["keys"]

    def revoke_key(self, key_id: str) -> None:
        self._json("DELETE", f"/v1/keys/{key_id}")

    def dr_status(self) -> dict[str, Any]:
        """This region's DR status: roles, epoch, LSNs, lag, errors (admin)."""
        return self._json("GET", "/v1/dr/status")

    def promote(
        self, region: str, *, mode: str = "planned", timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Promote `region` (admin): sent to that region's URL, found among `urls` by asking
        each its status."""
        body: dict[str, Any] = {"region": region, "mode": mode}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        target = self.region_url(region)
        with httpx.Client(base_url=target, headers=self._headers, timeout=None) as http:
            response = http.post("/v1/dr/promote", json=body)
        if response.status_code >= 400:
            raise AkashaHTTPError(response)
        return response.json()

    def rejoin(self) -> dict[str, Any]:
        """Make the region at `url` (deposed, restarted on an empty data dir) a secondary of
        the primary again: its snapshot and log are restored (admin)."""
        with httpx.Client(base_url=self.url, headers=self._headers, timeout=None) as http:
            response = http.post("/v1/dr/rejoin", json={})
        if response.status_code >= 400:
            raise AkashaHTTPError(response)
        return response.json()

    def region_url(self, region: str) -> str:
        """The URL (of `urls`) whose Akasha says it is `region`."""
        for url in self.urls:
            try:
                response = httpx.get(
                    f"{url}/v1/dr/status", headers=self._headers, timeout=min(self._timeout, 5)
                )
            except httpx.TransportError:
                continue
            if response.status_code == 200 and response.json().get("region") == region:
                return url
        raise ValueError(f"none of {self.urls} answers as region {region!r}")

    def _json(self, method: str, path: str, *, retries: int = 0, **kwargs: Any) -> Any:
        # Switching region (a not_primary answer, a URL that does not answer) is not a retry.
        switches = len(self.urls) + 1
        attempt = 0
        while True:
            delay = 0.5 * 2**attempt
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if switches > 0 and self._switch():
                    switches -= 1
                    continue
                if attempt >= retries:
                    raise
            else:
                refused, primary = _not_primary(response)
                if refused and switches > 0 and self._switch(primary):
                    switches -= 1
                    continue
                if response.status_code not in (502, 503, 504) or attempt >= retries:
                    break
                delay = retry_after_s(response) or delay
            time.sleep(delay)
            attempt += 1
        if response.status_code >= 400:
            raise AkashaHTTPError(response)
        return response.json() if response.content else None


def retry_after_s(response: httpx.Response) -> float | None:
    """The wait a refusal asks for (Akasha's is the time its queue takes to drain), if any."""
    try:
        return min(float(response.headers["retry-after"]), RETRY_AFTER_MAX_S)
    except (KeyError, ValueError):  # none, or an HTTP date: back off as usual
        return None


def _not_primary(response: httpx.Response) -> tuple[bool, str | None]:
    """Whether this is a 503 not_primary, and the primary's URL it names (if it does)."""
    if response.status_code != 503:
        return False, None
    try:
        body = response.json()
    except ValueError:
        return False, None
    if not isinstance(body, dict) or body.get("error") != "not_primary":
        return False, None
    return True, body.get("primary_url") or None


def default_url(settings: config.Settings) -> str:
    return f"http://{settings.serve.host}:{settings.serve.port}"


def wait_healthy(url: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200 and response.json()["status"] == "ok":
                return response.json()
            last = response.text
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"Akasha at {url} not healthy after {timeout} s: {last}")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
