"""The client follows the primary: several URLs, a write refused with a 503 `not_primary` is sent
to the primary the error names, a URL that does not answer is skipped. Against two small real
HTTP servers on loopback, each answering as one region would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from akasha_ray.client import AkashaClient, AkashaHTTPError
from akasha_ray.ports import free_port


class Region:
    def __init__(self, name: str, primary_url: str | None) -> None:
        self.name, self.primary_url = name, primary_url
        self.writes: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        region = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(200, {"region": region.name, "status": "ok"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if region.primary_url != "self":
                    self._answer(
                        503,
                        {
                            "error": "not_primary",
                            "message": f"region {region.name} does not take writes",
                            "primary": "east",
                            "primary_url": region.primary_url,
                        },
                    )
                    return
                region.writes.append(body)
                self._answer(201, {"ids": [m["content"] for m in body["memories"]]})

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def regions() -> Iterator[tuple[Region, Region]]:
    east = Region("east", "self")
    west = Region("west", east.url)
    yield east, west
    east.close()
    west.close()


MEMORY = {"system_id": "s", "conversation_id": "c", "content": "hello"}


def test_a_write_refused_by_a_secondary_goes_to_the_primary_it_names(regions):
    east, west = regions
    with AkashaClient(url=west.url, key="k") as client:  # only the secondary is known
        assert client.ingest([MEMORY], progress=False) == ["hello"]
        assert client.url == east.url and east.url in client.urls
    assert len(east.writes) == 1


def test_a_url_that_does_not_answer_is_skipped(regions):
    east, _ = regions
    dead = f"http://127.0.0.1:{free_port()}"
    with AkashaClient(url=f"{dead},{east.url}", key="k") as client:
        assert client.ingest([MEMORY], progress=False) == ["hello"]
        assert client.url == east.url


def test_without_a_primary_anywhere_the_refusal_is_raised(regions):
    _, west = regions
    west.primary_url = None  # names no URL, and no other URL is known
    with AkashaClient(url=west.url, key="k") as client, pytest.raises(AkashaHTTPError) as err:
        client._json("POST", "/v1/memories", json={"memories": [MEMORY]})
    assert err.value.status_code == 503 and err.value.body["error"] == "not_primary"


def test_the_region_url_is_found_by_asking_each(regions):
    east, west = regions
    with AkashaClient(url=f"{east.url},{west.url}", key="k") as client:
        assert client.region_url("west") == west.url
        with pytest.raises(ValueError, match="north"):
            client.region_url("north")


def test_a_comma_separated_url_list_is_read(regions):
    east, west = regions
    with AkashaClient(url=f" {east.url}/ , {west.url} ", key="k") as client:
        assert client.urls == [east.url, west.url]
    with pytest.raises(ValueError):
        AkashaClient(url=" , ", key="k")
