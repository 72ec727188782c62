"""`ray job submit` of the batch ingest: stopped mid-way, resubmitted, nothing lost or doubled."""

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from akasha_ray import demo

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _job_env(akasha) -> dict:
    env = {**akasha["env"], "RAY_API_SERVER_ADDRESS": akasha["dashboard_url"]}
    if (Path.home() / ".ray" / "auth_token").exists():
        env["RAY_AUTH_MODE"] = "token"  # Ray 2.60 requires it once a token exists
    return env


def _working_dir(tmp_path: Path) -> Path:
    """A copy of the repository with a file of its own: each submission uploads a package of its
    own, since Ray may delete a package another job of the same content still names (a job that
    ended releases it while the next submit, finding it there, skips the upload)."""
    copy = tmp_path / f"job-{uuid.uuid4().hex[:8]}"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "__pycache__", ".*_cache", ".hypothesis", "*.egg-info"
        ),
    )
    (copy / "submission.txt").write_text(copy.name)
    return copy


def _ray(akasha, *args, timeout=300, cwd=REPO):
    ray_bin = str(Path(akasha["akasha_bin"]).with_name("ray"))
    return subprocess.run(
        [ray_bin, "job", *args],
        env=_job_env(akasha),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(akasha, source, tmp_path, *, wait):
    job_id = f"ingest-{uuid.uuid4().hex[:8]}"
    runtime_env = json.dumps({"env_vars": {"AKASHA_NAMESPACE": "akasha-e2e"}})
    args = [
        "submit",
        "--submission-id",
        job_id,
        "--working-dir",
        ".",
        "--runtime-env-json",
        runtime_env,
    ]
    if not wait:
        args.append("--no-wait")
    done = _ray(
        akasha,
        *args,
        "--",
        "python",
        "-m",
        "akasha_ray.jobs.ingest",
        "--source",
        str(source),
        "--chunk-size",
        "100",
        timeout=900,
        cwd=_working_dir(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return job_id, done.stdout


def _stored(admin) -> int:
    return sum(tier["count"] for tier in admin.tiers())


def test_job_submit_stop_and_resume(akasha, admin, tmp_path):
    source = tmp_path / "memories.jsonl"
    demo.write_jsonl(source, demo.generate(1200, seed=2024))
    before = _stored(admin)

    job_id, _ = _submit(akasha, source, tmp_path, wait=False)
    checkpoints = Path(akasha["data_dir"]) / "jobs"
    deadline = time.monotonic() + 300
    while True:  # wait for a few chunks to be checkpointed, then stop the job
        done = [json.loads(p.read_text())["done"] for p in checkpoints.glob("ingest-*.json")]
        if done and len(done[0]) >= 2:
            break
        assert time.monotonic() < deadline, _ray(akasha, "logs", job_id).stdout
        time.sleep(0.5)
    assert _ray(akasha, "stop", job_id).returncode == 0
    partial = _stored(admin) - before
    assert 200 <= partial < 1200

    _, output = _submit(akasha, source, tmp_path, wait=True)
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    assert summary["chunks_resumed"] >= 2
    assert summary["stored"] + partial == 1200
    assert _stored(admin) - before == 1200


def test_migration_job_asks_the_migrator_for_a_pass(akasha, tmp_path):
    runtime_env = json.dumps({"env_vars": {"AKASHA_NAMESPACE": "akasha-e2e"}})
    done = _ray(
        akasha,
        *("submit", "--working-dir", ".", "--runtime-env-json", runtime_env),
        *("--", "python", "-m", "akasha_ray.jobs.migrate", "--batch-size", "100"),
        cwd=_working_dir(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(next(line for line in done.stdout.splitlines() if '"hot_window"' in line))
    assert report["hot_window"]["days"] == 7
    assert set(report["moved"]) == {"hot-0->warm", "hot-1->warm", "warm->cold"}
