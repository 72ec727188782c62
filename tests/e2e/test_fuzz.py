"""Every route fuzzed from the live deployment's `/openapi.json` (schemathesis over hypothesis):
valid and invalid input alike, with the admin key and with a scoped key, must never get a 5xx, and
every answer must match what the schema declares (status code, content type, body).

Bounded for CI: derandomized (the same examples every run), no shrinking, 30 examples per route,
mode and key (at 50, each key took about 2 minutes of a fresh-clone CI run). It writes random
memories, entities and metrics, so it runs after the other e2e tests (conftest.py's
`pytest_collection_modifyitems`). Each failure is listed with the curl command that replays it.

Schemathesis' own pytest loader (`schemathesis.pytest.from_fixture`, needed because the URL is
known only once the deployment is up) fails on pytest 9 (`Function` has no `_nodeid`), so each
operation's hypothesis strategy is driven here directly.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 30  # per route, mode (valid / invalid input) and key
# Per example: an ingest of a generated batch embeds it on this machine's CPUs.
DEADLINE = timedelta(seconds=60)
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


# Mixed into generated strings and numbers by schemathesis (its dictionaries): what hypothesis'
# JSON strategies seldom produce and once got a 500 or a null: offsets that leave years 1 to 9999,
# times far ahead, numbers float32 cannot hold or rounds to zero.
HOSTILE_STRINGS = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2999-01-01T00:00:00Z"]
HOSTILE_NUMBERS = [1e308, -3.5e38, 1e-50, 0]
SYSTEMS = ["fuzz-a", "fuzz-b"]  # the scoped key's
# Where generated values are often replaced by a few known ones, so that the scoped key's writes
# are its own (not all 403) and reads find what writes made (not all 404).
KNOWN = {
    "systems": (
        SYSTEMS,
        [
            "system_id",
            "body.system_ids[*]",
            "body.memories[*].system_id",
            "body.points[*].system_id",
            "body.entities[*].system_id",
            "body.relationships[*].system_id",
        ],
    ),
    "entities": (
        ["fuzz:ada", "fuzz:acme"],
        [
            "entity_id",
            "source",
            "target",
            "body.entity_id",
            "body.entities[*].id",
            "body.relationships[*].source",
            "body.relationships[*].target",
            "body.memories[*].entities[*]",
        ],
    ),
    "memories": (["fuzz-m1", "fuzz-m2"], ["memory_id", "body.memories[*].id"]),
}
# Put into one leaf of a generated JSON body here (schemathesis' validator cannot hold a lone
# surrogate, and JSON schemas have no NaN): each must get a 422.
POISONS = ["\ud800", math.nan, -math.inf]


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, (*path, i))]
    return [path]


def _poisoned(body: Any, path: tuple, poison: Any) -> Any:
    if not path:
        return poison
    head, *rest = path
    copy = dict(body) if isinstance(body, dict) else list(body)
    copy[head] = _poisoned(body[head], tuple(rest), poison)
    return copy


def _schema(url: str):
    config = schemathesis.Config.from_dict(
        {
            "base-url": url,
            "request-timeout": DEADLINE.total_seconds(),
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "dictionaries": {
                "hostile-strings": {"values": HOSTILE_STRINGS},
                "hostile-numbers": {"values": HOSTILE_NUMBERS},
                **{name: {"values": values} for name, (values, _) in KNOWN.items()},
            },
            "parameters": {
                where: {"dictionary": name, "probability": 0.7}
                for name, (_, places) in KNOWN.items()
                for where in places
            },
            "generation": {
                "dictionaries": {
                    "string": {"dictionary": "hostile-strings", "probability": 0.2},
                    "number": {"dictionary": "hostile-numbers", "probability": 0.2},
                }
            },
        }
    )
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


def _fuzz(
    operation, mode: GenerationMode, headers: dict[str, str], succeeded: set[str]
) -> dict[str, str]:
    """Failures found on one operation in one mode: first message per kind of failure. Adds the
    operation to `succeeded` when any of its answers is a 2xx."""
    found: dict[str, str] = {}

    @given(case=operation.as_strategy(generation_mode=mode, headers=headers), data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=DEADLINE,
        phases=[Phase.generate],
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case, data) -> None:
        leaves = _leaves(case.body) if isinstance(case.body, dict | list) else []
        if leaves and data.draw(st.integers(0, 3)) == 0:
            path = data.draw(st.sampled_from(leaves))
            poison = data.draw(st.sampled_from(POISONS))
            request = case.as_transport_kwargs(headers=headers)
            del request["json"]  # requests refuses NaN; Python's json writes it as a client would
            request["data"] = json.dumps(_poisoned(case.body, path, poison)).encode()
            request["headers"]["Content-Type"] = "application/json"
            response = requests.request(**request, timeout=DEADLINE.total_seconds())
            if response.status_code != 422 or response.json()["detail"][0]["loc"][0] != "body":
                kind = f"{operation.label}: {poison!r} at {path} answered {response.status_code}"
                found.setdefault(kind, response.text[:500])
            return
        try:
            response = case.call_and_validate(headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                kind = f"{operation.label} [{mode.value}]: {failure.title}"
                found.setdefault(kind, group.message)
        else:
            if response.status_code < 300:
                succeeded.add(operation.label)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # Nothing in this operation can be made invalid (no parameters, no body).
    return found


@pytest.mark.parametrize("who", ["admin", "scoped"])
def test_no_5xx_and_every_answer_matches_the_schema(akasha, admin, who):
    scoped = who == "scoped"
    key = admin.create_key(SYSTEMS, ["read", "write"]) if scoped else akasha["admin_key"]
    headers = {"Authorization": f"Bearer {key}"}
    schema = _schema(akasha["url"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    failures: dict[str, str] = {}
    succeeded: set[str] = set()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.update(_fuzz(operation, mode, headers, succeeded))
    assert not failures, "\n".join(f"{kind}\n{message}" for kind, message in failures.items())
    # Not a vacuous pass (a key refused everywhere, a body never valid): writes and reads went in.
    assert len(succeeded) >= 6, sorted(succeeded)
