"""The `akasha` client commands against the deployed Akasha."""

import json
import subprocess

import pytest

from akasha_ray import demo

pytestmark = pytest.mark.e2e


def _akasha(akasha, *args):
    done = subprocess.run(
        [akasha["akasha_bin"], *args],
        env=akasha["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done


def test_ingest_search_status_and_keys(akasha, tmp_path):
    source = tmp_path / "cli.jsonl"
    records = [r for r in demo.generate(400, seed=77) if r["system_id"] == "support-bot"][:40]
    demo.write_jsonl(source, records)
    # No --url/--key: the CLI finds both from AKASHA_* settings and the admin key file.
    done = _akasha(akasha, "ingest", str(source), "--batch-size", "16")
    assert done.returncode == 0, done.stderr
    assert "ingested 40 memories" in done.stdout
    assert "40/40" in done.stderr  # the progress bar

    done = _akasha(
        akasha,
        "search",
        "refund for a damaged order",
        "--system",
        "support-bot",
        "--since",
        "200d",
        "--limit",
        "3",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3 and all("support-bot" in line for line in lines)

    done = _akasha(akasha, "status")
    assert done.returncode == 0 and ": ok" in done.stdout and "hot-0" in done.stdout

    done = _akasha(akasha, "keys", "create", "--system", "support-bot", "--scope", "read")
    assert done.returncode == 0 and done.stdout.startswith("ak_")
    scoped = done.stdout.strip()
    done = _akasha(akasha, "search", "anything", "--key", scoped, "--system", "other-bot")
    assert done.returncode == 1 and "403" in done.stderr


def test_migrate_runs_a_pass_through_the_migrator(akasha):
    done = _akasha(akasha, "migrate", "--batch-size", "100")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["hot_window"]["days"] == 7
    assert set(report["moved"]) == {"hot-0->warm", "hot-1->warm", "warm->cold"}


def test_cli_errors_are_one_line(akasha, tmp_path):
    done = _akasha(akasha, "ingest", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 1 and done.stderr.startswith("akasha: no such file")
    done = _akasha(akasha, "search", "x", "--since", "2026-01-01T00:00:00")
    assert done.returncode == 1 and "time zone" in done.stderr
