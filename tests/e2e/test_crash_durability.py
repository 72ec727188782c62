"""`kill -9` of every Akasha and Ray process, in the middle of a stream of ingests and in the
middle of a migration pass, then `akasha up`: every acknowledged memory is there, exactly once,
in one tier (README, "Guarantees")."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from akasha_ray.identity import memory_key
from tests.e2e.own_head import AKASHA_BIN, kill_everything, own_akasha, up, where

pytestmark = pytest.mark.e2e

HOT_DAYS = 40 / 86_400  # memories leave hot after 40 s, so a pass has something to move
BATCH = 100


@pytest.fixture(scope="module")
def crashable():
    with own_akasha(
        "akasha-crash",
        AKASHA_TIERS__HOT_DAYS=str(HOT_DAYS),
        AKASHA_TIERS__HOT_MIN_DAYS=str(HOT_DAYS / 2),
        AKASHA_TIERS__MIGRATE_EVERY_S="0",
        AKASHA_SERVE__REQUEST_TIMEOUT_S="3",  # how long a migrated batch lingers in both tiers
    ) as state:
        yield state


class Writer(threading.Thread):
    """POSTs batches of sequence-numbered memories until told to stop or refused; keeps the keys
    of every acknowledged (201) batch."""

    def __init__(self, state, prefix: str, batches: int | None = None) -> None:
        super().__init__(daemon=True)
        self.state, self.prefix, self.batches = state, prefix, batches
        self.acknowledged: list[str] = []
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.state['admin_key']}"}
        with httpx.Client(base_url=self.state["url"], headers=headers, timeout=60) as http:
            n = 0
            while not self.stop.is_set() and (self.batches is None or n < self.batches):
                now = datetime.now(UTC).isoformat()
                memories = [
                    {
                        "id": f"{self.prefix}-{n}-{i}",
                        "system_id": f"crash-{i % 7}",
                        "conversation_id": f"c{n}",
                        "content": f"crash test memory {n} {i}",
                        "created_at": now,
                    }
                    for i in range(BATCH)
                ]
                self.sent += 1
                try:
                    response = http.post("/v1/memories", json={"memories": memories})
                except httpx.HTTPError:
                    return  # the server died under us: this batch is unacknowledged
                if response.status_code != 201:
                    return
                self.acknowledged += [memory_key(m["system_id"], m["id"]) for m in memories]
                n += 1


def _once_in_one_tier(state, keys: list[str]) -> dict[str, list[str]]:
    found = where(state, keys)
    wrong = {k: tiers for k, tiers in found.items() if len(tiers) != 1}
    assert wrong == {}, f"{len(wrong)} acknowledged memories not in exactly one tier: " + str(
        list(wrong.items())[:5]
    )
    return found


def test_kill_9_of_everything_during_ingests_loses_no_acknowledged_memory(crashable):
    writer = Writer(crashable, "ingest")
    writer.start()
    deadline = time.monotonic() + 300
    while len(writer.acknowledged) < 15 * BATCH and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(writer.acknowledged) >= 15 * BATCH, "the writer did not get going"
    killed = kill_everything(crashable)  # a batch is in flight right now
    writer.join(timeout=120)
    assert killed >= 5 and not writer.is_alive()

    again = up(crashable)
    assert "Starting a new Ray head" in again.stdout, again.stdout
    found = _once_in_one_tier(crashable, writer.acknowledged)
    assert {t for tiers in found.values() for t in tiers} == {"hot"}
    # And it takes writes again.
    more = Writer(crashable, "after", batches=2)
    more.start()
    more.join(timeout=300)
    assert len(more.acknowledged) == 2 * BATCH


def test_kill_9_of_everything_during_a_migration_pass_loses_and_doubles_nothing(crashable):
    writer = Writer(crashable, "moving", batches=20)
    writer.start()
    writer.join(timeout=600)
    keys = writer.acknowledged
    assert len(keys) == 20 * BATCH
    time.sleep(HOT_DAYS * 86_400 + 2)  # every one of them is now older than the hot window

    ledger = crashable["data_dir"] / "migration" / "hot-0-to-warm.jsonl"
    migrating = subprocess.Popen(
        [AKASHA_BIN, "migrate", "--batch-size", "100"],
        env=crashable["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until some batches are open, some done
        if ledger.exists() and ledger.read_text().count('"done"') >= 3:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the migration pass did not start")
    kill_everything(crashable, migrating)
    assert ledger.exists()  # batches were open when everything died

    again = up(crashable)  # finishes the open batches before it says it is up
    assert "an interrupted migration pass had left in two tiers" in again.stdout, again.stdout
    mid = _once_in_one_tier(crashable, keys)
    assert {t for tiers in mid.values() for t in tiers} == {"hot", "warm"}
    finished = subprocess.run(
        [AKASHA_BIN, "migrate"], env=crashable["env"], capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    after = _once_in_one_tier(crashable, keys)
    assert {t for tiers in after.values() for t in tiers} == {"warm"}
    assert not ledger.exists()
