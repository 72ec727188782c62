"""The witness: the one object that says which region is primary, at which epoch.

`akasha-dr/witness.json` in the witness region's bucket holds
`{"epoch": int, "primary": str, "at": iso time, "by": region}`. It only moves by a compare-and-
swap on its etag (`Bucket.put_if`), so of two promotions that read the same state exactly one
writes the next epoch; the other gets `Fenced` and learns who won. A region that reads a higher
epoch naming someone else is stale: it refuses writes and stops shipping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from akasha_ray.errors import ConfigError, Conflict
from akasha_ray.replication.bucket import Bucket, CasFailed

KEY = "akasha-dr/witness.json"


@dataclass(frozen=True)
class WitnessState:
    epoch: int
    primary: str
    etag: str
    at: datetime | None = None
    by: str | None = None


class Fenced(Conflict):
    """Another region moved the witness first: this promotion (or this primary) lost."""

    code = "fenced"

    def __init__(self, message: str, *, current: WitnessState | None) -> None:
        super().__init__(message)
        self.current = current

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        if self.current is not None:
            body |= {"epoch": self.current.epoch, "primary": self.current.primary}
        return body


class Witness:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def read(self) -> WitnessState | None:
        blob = self.bucket.get_blob(KEY)
        return None if blob is None else _parse(blob.data, blob.etag, self.bucket)

    def init(self, primary: str, *, by: str | None = None) -> WitnessState:
        """Epoch 1 naming `primary` if there is no witness yet; otherwise what is there."""
        data = _render(1, primary, by or primary)
        try:
            etag = self.bucket.put_if(KEY, data, None)
        except CasFailed as exc:
            current = self.read()
            if current is None:  # deleted in between: nothing sensible to do but say so
                raise Fenced(
                    f"the witness in {self.bucket.describe()} changed", current=None
                ) from exc
            return current
        return _parse(data, etag, self.bucket)

    def advance(
        self, expected: WitnessState, new_primary: str, *, by: str | None = None
    ) -> WitnessState:
        """Epoch + 1 naming `new_primary`, only if the witness is still `expected`.

        Raises `Fenced` (carrying the state now there) when another region moved it first.
        """
        data = _render(expected.epoch + 1, new_primary, by or new_primary)
        try:
            etag = self.bucket.put_if(KEY, data, expected.etag)
        except CasFailed as exc:
            current = self.read()
            if exc.after_retry and current is not None and self._is_ours(data):
                return current  # our first attempt landed; its answer was lost in transit
            won = "nobody" if current is None else f"{current.primary} at epoch {current.epoch}"
            raise Fenced(
                f"another promotion won: the witness in {self.bucket.describe()} names {won} "
                f"(expected epoch {expected.epoch}, {expected.primary})",
                current=current,
            ) from exc
        return _parse(data, etag, self.bucket)

    def _is_ours(self, data: bytes) -> bool:
        return self.bucket.get(KEY) == data  # `at` carries microseconds: bytes are one writer's


def _render(epoch: int, primary: str, by: str) -> bytes:
    at = datetime.now(UTC).isoformat()
    body = {"epoch": epoch, "primary": primary, "at": at, "by": by}
    return json.dumps(body, sort_keys=True).encode()


def _parse(data: bytes, etag: str, bucket: Bucket) -> WitnessState:
    try:
        body = json.loads(data)
        return WitnessState(
            epoch=int(body["epoch"]),
            primary=str(body["primary"]),
            etag=etag,
            at=datetime.fromisoformat(body["at"]) if body.get("at") else None,
            by=body.get("by"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the witness {KEY} in {bucket.describe()} is not valid: {exc}") from exc
