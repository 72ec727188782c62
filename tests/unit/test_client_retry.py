"""The client waits as long as a refusal's Retry-After asks (Akasha's says when its queue has
room), and backs off exponentially when there is none. Against a small real HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from akasha_ray import client as client_module
from akasha_ray.client import AkashaClient


def serve(answers: list[tuple[int, dict[str, str]]]) -> str:
    """A server that gives `answers` (status, headers) in order, then 200s."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            status, headers = answers.pop(0) if answers else (200, {})
            data = json.dumps({"error": "unavailable"} if status >= 400 else {"ok": 1}).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def test_a_refusal_is_retried_after_its_retry_after(waits):
    url = serve([(503, {"Retry-After": "7"}), (503, {"Retry-After": "600"}), (503, {})])
    with AkashaClient(url=url, key="k") as client:
        assert client._json("GET", "/v1/anything", retries=3) == {"ok": 1}
    # As asked; a longer ask is capped; without one, the usual backoff (0.5 s, 1 s, 2 s).
    assert waits == [7.0, client_module.RETRY_AFTER_MAX_S, 2.0]
