"""ASGI middleware: a JSON body with NaN or infinities, a lone surrogate (values or keys), or
nesting deeper than 32 levels gets a 422 naming the spot before any route sees it.

Python's json (which FastAPI uses) reads `NaN`, `Infinity` and `1e999` as floats and `"\\ud800"`
as a str that no UTF-8 encoder takes, and a body nested ~1,000 deep raises RecursionError (a 400
with no location). Checking the decoded body once here covers every route, whatever its model
says; the models check the same things again for callers that do not come over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akasha_ray.validation import MAX_JSON_DEPTH, Problem, find_problem


def body_problem(body: bytes) -> Problem | None:
    """What is hostile in a request body, or None (also for a body that is not JSON at all:
    FastAPI's own 422 says where it breaks)."""
    if not body:
        return None
    try:
        value = json.loads(body)
    except RecursionError:
        return Problem((), f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "too_deep")
    except UnicodeDecodeError:
        return Problem((), "body must be UTF-8 encoded JSON", "json_invalid")
    except ValueError:
        return None
    return find_problem(value)


def _is_json(scope: Scope) -> bool:
    """As FastAPI decides: no content type, or application/json or application/*+json."""
    content_type = ""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = value.decode("latin-1").split(";", 1)[0].strip().lower()
    return content_type == "" or (
        content_type.startswith("application/")
        and (content_type == "application/json" or content_type.endswith("+json"))
    )


class BodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = body_problem(body)
        if problem is not None:
            detail: dict[str, Any] = {
                "type": problem.type,
                "loc": ["body", *problem.loc],
                "msg": problem.msg,
            }
            await JSONResponse({"detail": [detail]}, status_code=422)(scope, receive, send)
            return
        replayed = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([replayed], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
