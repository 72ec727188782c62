"""One exception tree for Akasha, each class carrying the HTTP status it maps to."""

from __future__ import annotations


class AkashaError(Exception):
    """Root of every error Akasha raises on purpose."""

    status_code: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
            # The same shape as FastAPI's validation errors, so clients read one format.
            body["detail"] = [{"loc": [self.field], "msg": self.message, "type": self.code}]
        return body


class InvalidInput(AkashaError):
    """The request is well-formed JSON but a value is not acceptable."""

    status_code = 422
    code = "invalid_input"


class Unauthenticated(AkashaError):
    """No API key, or one Akasha does not know."""

    status_code = 401
    code = "unauthenticated"


class Forbidden(AkashaError):
    """The key is valid but may not do this."""

    status_code = 403
    code = "forbidden"


class NotFound(AkashaError):
    status_code = 404
    code = "not_found"


class Conflict(AkashaError):
    status_code = 409
    code = "conflict"


class ConfigError(AkashaError):
    """The configuration cannot work; the message says which setting to change."""

    status_code = 500
    code = "config"


class Unavailable(AkashaError):
    """A component Akasha depends on is down or timed out."""

    status_code = 503
    code = "unavailable"


class NotPrimary(Unavailable):
    """This region does not take writes now (a secondary, or a primary that lost its epoch)."""

    code = "not_primary"

    def __init__(
        self, message: str, *, primary: str | None = None, primary_url: str | None = None
    ) -> None:
        super().__init__(message)
        self.primary = primary
        self.primary_url = primary_url

    def __reduce__(self):  # keep the primary when Ray carries the error out of an actor
        return (_not_primary, (self.message, self.primary, self.primary_url))

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "primary": self.primary, "primary_url": self.primary_url}


def _not_primary(message: str, primary: str | None, primary_url: str | None) -> NotPrimary:
    return NotPrimary(message, primary=primary, primary_url=primary_url)
