"""The witness on a local folder: init, advance, fencing, concurrent promotions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from akasha_ray.errors import ConfigError
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.witness import KEY, Fenced, Witness, WitnessState


def promote_at_once(witness: Witness, expected: WitnessState, names: list[str]) -> tuple:
    """Every name tries `advance(expected, name)` at the same moment, each from its thread."""
    start = threading.Barrier(len(names))
    won: list[WitnessState] = []
    fenced: list[Fenced] = []

    def promote(name: str) -> None:
        start.wait()
        try:
            won.append(witness.advance(expected, name))
        except Fenced as exc:
            fenced.append(exc)

    threads = [threading.Thread(target=promote, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, fenced


def test_init_read_advance(tmp_path: Path) -> None:
    witness = Witness(Bucket(str(tmp_path)))
    assert witness.read() is None
    first = witness.init("east")
    assert (first.epoch, first.primary, first.by) == (1, "east", "east")
    assert witness.init("west") == first  # present: what is there, unchanged
    assert witness.read() == first
    second = witness.advance(first, "west", by="west")
    assert (second.epoch, second.primary) == (2, "west")
    assert witness.read() == second
    assert second.at is not None and first.at is not None and second.at >= first.at


def test_stale_advance_is_fenced_and_names_the_winner(tmp_path: Path) -> None:
    witness = Witness(Bucket(str(tmp_path)))
    first = witness.init("east")
    witness.advance(first, "west")
    with pytest.raises(Fenced, match=r"another promotion won.*west at epoch 2") as caught:
        witness.advance(first, "backup")
    assert caught.value.current is not None and caught.value.current.epoch == 2
    assert caught.value.status_code == 409
    assert caught.value.to_dict()["primary"] == "west"


def test_concurrent_promotions_one_wins(tmp_path: Path) -> None:
    witness = Witness(Bucket(str(tmp_path)))
    first = witness.init("east")
    won, fenced = promote_at_once(witness, first, ["west", "north", "south", "east"])
    assert len(won) == 1 and len(fenced) == 3
    assert witness.read() == won[0]
    assert all(f.current == won[0] for f in fenced)


def test_a_corrupt_witness_is_a_config_error(tmp_path: Path) -> None:
    bucket = Bucket(str(tmp_path))
    bucket.put(KEY, b'{"epoch": "x"}')
    with pytest.raises(ConfigError, match="witness"):
        Witness(bucket).read()
