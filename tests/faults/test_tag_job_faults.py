"""A tag job survives what can happen to it: its worker killed with -9 in the middle of the push,
and a git remote that hangs. Real workers (`python worker.py`), real git (a bare remote whose
pre-receive hook holds the push), short leases; every wait is bounded.

For each: the job ends (never running forever), the tag is on the remote once at the released
commit (never duplicated, never moved), and a retry succeeds once the remote works."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, run_worker_burst
from tests.processes import alive, kill_tree, tree_of, wait_for

from .conftest import (
    Remote,
    fault_env,
    job_row,
    jobs_of,
    release_row,
    start_worker,
    stop_worker,
)

FINISHED = ("succeeded", "failed", "cancelled")


def cut(app: Any, demo: Any) -> tuple[str, int, str]:
    """Cut a release of main through the API: (version, tag job id, main's head)."""
    answer = app.test_client().post("/api/v1/projects/demo/releases", json={"ref": "main"},
                                    headers=demo.headers())
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    return body["version"], body["job"]["id"], git("rev-parse", "main", cwd=demo.origin)


def retry(app: Any, demo: Any, version: str) -> int:
    answer = app.test_client().post(f"/api/v1/projects/demo/releases/{version}/retry",
                                    headers=demo.headers("rita"))
    assert answer.status_code == 202, answer.get_json()
    return int(answer.get_json()["job"]["id"])


def ended(job_id: int) -> dict[str, Any] | None:
    row = job_row(job_id)
    return row if row["status"] in FINISHED else None


def horse_of(worker: Any) -> int:
    """The work-horse running the tag job: the parent of the `git push` it started."""
    for pid in tree_of(worker.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        if argv[0].endswith(b"git") and b"push" in argv:
            return int(stat[stat.rfind(b")") + 2:].split()[1])
    raise AssertionError("no git push under the worker")


@pytest.mark.parametrize("kill", ["everything", "horse"])
def test_a_worker_killed_during_a_tag_push_ends_its_job_and_the_retry_keeps_the_one_tag(
        app, demo_project, worker_env, tmp_path: Path, kill: str) -> None:
    """`everything`: kill -9 of the worker and all it started (the machine or its cgroup died);
    the push dies too and the retry pushes the tag. `horse`: kill -9 of the work-horse alone (the
    OOM killer's choice); RQ's worker lives on and marks its RQ job failed, and the push relapp
    started, in a session of its own, lands the tag; the retry finds it at its commit."""
    remote = Remote(demo_project.origin)
    remote.hold()
    version, job_id, head = cut(app, demo_project)
    env = fault_env(worker_env)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    successor = worker
    try:
        hook = wait_for("the tag push to reach the remote's hook", remote.hook_pid)
        assert job_row(job_id)["status"] == "running"
        if kill == "everything":
            assert hook in kill_tree(worker)
            successor = start_worker(env, log)
        else:
            os.kill(horse_of(worker), signal.SIGKILL)
        remote.release()
        wait_for("no git left working on the remote", lambda: not alive(hook) and remote.idle())
        landed = remote.tag(f"v{version}")
        assert landed == (None if kill == "everything" else ("tag", head))

        row = wait_for("the lost tag job to end", lambda: ended(job_id))
        assert row["status"] == "failed", log.read_text()[-3000:]
        assert row["error"] == "The job was lost: its worker stopped while it ran; retry it."
        assert release_row("demo", version)["state"] == "failed"

        again = retry(app, demo_project, version)
        retried = wait_for("the retry to end", lambda: ended(again))
        assert retried["status"] == "succeeded", (retried["error"], log.read_text()[-3000:])
    finally:
        stop_worker(worker)
        stop_worker(successor)
    tag = f"v{version}"
    assert release_row("demo", version)["state"] == "tagged"
    assert remote.tag(tag) == ("tag", head)
    # One tag push reached the remote (the retry's, or the orphaned one's): never two.
    assert [line.split()[0] for line in remote.pushed_tags()] == [f"refs/tags/{tag}"]
    assert [j["status"] for j in jobs_of("demo", version)] == ["failed", "succeeded"]


def test_a_hanging_remote_fails_the_tag_job_after_the_git_timeout_and_a_retry_succeeds(
        app, demo_project, worker_env, tmp_path: Path) -> None:
    remote = Remote(demo_project.origin)
    remote.hold(limit_seconds=600)  # the remote hangs (for ten minutes: long past any timeout)
    version, job_id, head = cut(app, demo_project)
    env = fault_env(worker_env, RELAPP_GIT_TIMEOUT="3")
    try:
        run = run_worker_burst(env, timeout=90)
        assert run.returncode == 0, run.stderr[-3000:]
        row = job_row(job_id)
        assert row["status"] == "failed"
        assert "did not finish within 3 seconds and was stopped" in row["error"], row["error"]
        assert "Traceback" not in row["error"]
        hook = remote.hook_pid()
        assert hook is not None and not alive(hook)  # git and its hook were stopped with the job
        assert remote.idle()
        assert remote.tag(f"v{version}") is None and remote.pushed_tags() == []
        assert release_row("demo", version)["state"] == "failed"
    finally:
        remote.release()

    again = retry(app, demo_project, version)
    run = run_worker_burst(env, timeout=90)
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_row(again)["status"] == "succeeded", job_row(again)["error"]
    assert remote.tag(f"v{version}") == ("tag", head)
    assert len(remote.pushed_tags()) == 1
