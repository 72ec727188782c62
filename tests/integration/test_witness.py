"""The witness in a real SeaweedFS bucket: the epoch moves only by compare-and-swap, and of
concurrent promotions from the same state exactly one wins."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.witness import Fenced, Witness
from tests.servers import seaweedfs
from tests.servers.flaky_proxy import flaky_proxy
from tests.unit.test_witness_local import promote_at_once

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[seaweedfs.S3Server]:
    with seaweedfs.seaweedfs_with_credentials("akasha-witness") as server:
        yield server


@pytest.fixture
def witness(s3: seaweedfs.S3Server) -> Witness:
    return Witness(Bucket(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", s3.endpoint_url))


def test_init_and_advance(witness: Witness) -> None:
    assert witness.read() is None
    first = witness.init("east")
    assert witness.init("west") == first
    second = witness.advance(first, "west")
    assert (second.epoch, second.primary) == (2, "west")
    assert witness.read() == second
    with pytest.raises(Fenced, match="west at epoch 2"):
        witness.advance(first, "backup")


def test_concurrent_inits_agree(witness: Witness) -> None:
    import threading

    start = threading.Barrier(4)
    seen = []

    def init(name: str) -> None:
        start.wait()
        seen.append(witness.init(name))

    threads = [threading.Thread(target=init, args=(n,)) for n in ("a1", "b2", "c3", "d4")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({(s.epoch, s.primary, s.etag) for s in seen}) == 1
    assert witness.read() == seen[0]


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_promotions_exactly_one_wins(witness: Witness, round_: int) -> None:
    state = witness.init("east")
    for _ in range(round_):  # start from epochs other than 1 as well
        state = witness.advance(state, "east")
    won, fenced = promote_at_once(witness, state, ["west", "north", "south", "backup", "east"])
    assert len(won) == 1 and len(fenced) == 4
    assert won[0].epoch == state.epoch + 1
    assert witness.read() == won[0]
    assert {f.current for f in fenced} == {won[0]}


def test_a_promotion_whose_reply_was_lost_still_wins(s3: seaweedfs.S3Server) -> None:
    """The CAS landed but its answer did not: the retry meets its own write (412), which
    must read as a win, not as Fenced."""
    with flaky_proxy(s3.endpoint_url) as proxy:
        bucket = Bucket(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", proxy.url)
        witness = Witness(bucket)
        first = witness.init("east")
        proxy.lose_replies(1)
        second = witness.advance(first, "west")
        assert proxy.lost == 1
        assert (second.epoch, second.primary) == (2, "west")
        assert witness.read() == second
        with pytest.raises(Fenced):
            witness.advance(first, "north")
