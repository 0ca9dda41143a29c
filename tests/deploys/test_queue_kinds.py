"""Queues per kind of work (issue 10): a deploy held running on the deploy worker never holds up
a tag job on the git worker.

Real processes: one `python worker.py --queues <kind>` per kind, as `make run` starts them, on
real Redis and real git (the demo history on a bare remote). The deploy command waits for a file
(`go`), so the deploy runs for as long as the test wants, without a timing in the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job as RQJob
from sqlalchemy import select

from relapp.extensions import QUEUE_KINDS, db
from relapp.models import Deployment, Environment, Job, Release
from tests.conftest import ROOT, git
from tests.processes import kill_tree, tree_of, wait_for

# Says it started, then waits for `go` next to it; never ends by itself before that.
HOLD = textwrap.dedent('''\
    #!/bin/sh
    dir="$(dirname "$0")"
    echo "$RELAPP_TAG" > "$dir/started"
    echo "holding until $dir/go exists"
    while [ ! -e "$dir/go" ]; do sleep 0.1; done
    echo "deployed $RELAPP_TAG"
''')


def cut(app: Any, demo: Any) -> tuple[str, int]:
    """Cut a release of main through the API: (version, tag job id)."""
    answer = app.test_client().post("/api/v1/projects/demo/releases", json={"ref": "main"},
                                    headers=demo.headers())
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["version"], answer.get_json()["job"]["id"]


def fresh(model: Any, row_id: int) -> Any:
    """A row as the database has it now (the workers write it from other processes)."""
    db.session.rollback()
    row = db.session.get(model, row_id)
    db.session.refresh(row)
    db.session.commit()
    return row


def job_ended(job_id: int) -> str | None:
    """The job's final status, or None while it waits or runs."""
    status = str(fresh(Job, job_id).status)
    return status if status in ("succeeded", "failed", "cancelled") else None


def deployment_ended(deployment_id: int) -> str | None:
    status = str(fresh(Deployment, deployment_id).status)
    return status if status in ("succeeded", "failed", "cancelled", "abandoned") else None


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One real worker per kind of work, each in a session of its own; killed with everything
    they started on the way out."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for kind in QUEUE_KINDS:
            with (tmp_path / f"worker-{kind}.log").open("ab") as log:
                started[kind] = subprocess.Popen(
                    [sys.executable, str(ROOT / "worker.py"), "--queues", kind], cwd=ROOT,
                    env=worker_env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        yield started
    finally:
        for proc in started.values():
            if proc.poll() is None:
                kill_tree(proc)


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("worker-*.log")))


def test_a_tag_job_finishes_while_a_deploy_is_held_running(app, demo_project, workers, tmp_path):
    root = tmp_path / "hold"
    root.mkdir()
    (root / "hold.sh").write_text(HOLD)

    # A first release, tagged by the git worker.
    first, first_job = cut(app, demo_project)
    assert wait_for("the first tag job", lambda: job_ended(first_job)) == "succeeded", logs(tmp_path)

    # Its deploy to qa starts on the deploy worker and holds.
    qa = db.session.scalar(select(Environment).where(Environment.name == "qa"))
    qa.driver = {"kind": "command", "argv": ["/bin/sh", str(root / "hold.sh")], "cwd": str(root),
                 "timeout": 600}
    db.session.commit()
    answer = app.test_client().post(f"/api/v1/projects/demo/releases/{first}/deployments",
                                    json={"environment": "qa"}, headers=demo_project.headers())
    assert answer.status_code == 202, answer.get_json()
    deployment_id = answer.get_json()["deployment"]["id"]
    deploy_job = answer.get_json()["job"]["id"]
    wait_for("the deploy to hold", (root / "started").exists)
    assert fresh(Deployment, deployment_id).status == "running"

    # Meanwhile a second cut: the git worker tags it while the deploy still holds.
    demo_project.commit_on_main("notes/queues.txt", "one queue per kind\n", "feat: queues per kind")
    second, second_job = cut(app, demo_project)
    assert wait_for("the second tag job", lambda: job_ended(second_job)) == "succeeded", logs(tmp_path)
    assert demo_project.remote_tag(f"v{second}") is not None
    assert db.session.scalar(select(Release.state).where(Release.version == second)) == "tagged"
    assert not (root / "go").exists()
    assert fresh(Deployment, deployment_id).status == "running"
    assert fresh(Job, deploy_job).status == "running"

    # Each travelled on its own kind's queue.
    redis = Redis.from_url(app.config["REDIS_URL"])
    prefix = app.config["RQ_QUEUE"]
    origins = {job_id: RQJob.fetch(fresh(Job, job_id).rq_id, connection=redis).origin
               for job_id in (first_job, second_job, deploy_job)}
    assert origins == {first_job: f"{prefix}-git", second_job: f"{prefix}-git",
                       deploy_job: f"{prefix}-deploy"}

    # Let go: the deploy ends well.
    (root / "go").write_text("")
    assert wait_for("the deploy to end", lambda: deployment_ended(deployment_id)) == "succeeded", \
        logs(tmp_path)

    # Only the worker serving `schedule` runs the maintenance companion.
    companions = {kind: [pid for pid in tree_of(proc.pid)
                         if b"--maintain" in Path(f"/proc/{pid}/cmdline").read_bytes()]
                  for kind, proc in workers.items()}
    assert {kind: len(pids) for kind, pids in companions.items()} == {"git": 0, "deploy": 0, "schedule": 1}
    assert git("tag", "--list", f"v{second}", cwd=demo_project.origin) == f"v{second}"


def worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "worker.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_queues_takes_known_kinds_only(worker_env):
    refused = worker(worker_env, "--queues", "deploy,nightly")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "relapp worker: unknown queue kind 'nightly' in --queues; the kinds are git, deploy, schedule."]
    assert worker(worker_env, "--queues", " , ").returncode == 2
    helped = worker(worker_env, "--help")
    assert helped.returncode == 0
    assert "--queues KINDS" in helped.stdout and "git, deploy, schedule" in helped.stdout


def test_jobs_left_on_the_single_queue_of_an_older_release_still_run(app, worker_env):
    """An upgrade with work in flight: what waits on the old queue (named RELAPP_QUEUE) is served
    by the worker that serves `schedule`, queued or scheduled."""
    redis = Redis.from_url(app.config["REDIS_URL"])
    legacy = Queue(app.config["RQ_QUEUE"], connection=redis)
    queued = legacy.enqueue("relapp.jobs.ping", "queued before the upgrade")
    scheduled = legacy.create_job("relapp.jobs.ping", args=("scheduled before the upgrade",))
    legacy.schedule_job(scheduled, datetime(2020, 1, 1, tzinfo=UTC))  # long due

    done = worker(worker_env, "--queues", "git,deploy", "--burst")
    assert done.returncode == 0, done.stderr[-2000:]
    assert queued.get_status(refresh=True) == "queued"  # not theirs

    done = worker(worker_env, "--queues", "schedule", "--burst")
    assert done.returncode == 0, done.stderr[-2000:]
    assert queued.get_status(refresh=True) == "finished"
    assert queued.return_value()["echo"] == "queued before the upgrade"
    assert scheduled.get_status(refresh=True) == "finished"
    assert legacy.count == 0
