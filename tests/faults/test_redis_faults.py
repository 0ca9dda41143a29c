"""Redis is only the carrier: restarted in the middle of a job (with and without persistence) or
flushed with jobs queued and running, every job row still ends, each runs exactly once, and the
jobs Redis lost are handed over again (services/queue.requeue_lost and the relay) and complete.

Three projects each cut a release: three tag jobs on one real worker (`python worker.py`). The
first one's push waits in its remote's hook while Redis fails; the other two wait in Redis. Side
effects are counted on the remotes (one line per accepted tag push)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relapp import demo
from relapp.services.projects import sync_settings
from relapp.settings import parse
from tests.conftest import git
from tests.processes import wait_for

from .conftest import (
    Remote,
    fault_env,
    job_row,
    start_worker,
    stop_worker,
    use_redis,
)

KEYS = ("demo", "demo2", "demo3")


def three_projects(demo_project: Any, tmp_path: Path) -> dict[str, Remote]:
    """The demo project and two copies of it on remotes of their own (no release train)."""
    texts = [demo.config_text(demo_project.folder)]
    for key in KEYS[1:]:
        folder = tmp_path / key
        folder.mkdir()
        git("clone", "-q", "--bare", str(demo_project.origin), str(folder / "origin.git"))
        texts.append(demo.config_text(folder).replace('key = "demo"', f'key = "{key}"')
                     .replace('name = "Demo shop"', f'name = "Shop {key}"'))
    config = "".join(text.replace('train = { cron = "0 10 * * MON" }\n', "") for text in texts)
    sync_settings(parse(config, base_dir=tmp_path))
    return {"demo": Remote(demo_project.origin),
            **{key: Remote(tmp_path / key / "origin.git") for key in KEYS[1:]}}


def cut_all(app: Any, demo_project: Any) -> dict[str, tuple[str, int, str]]:
    """Cut main of every project: key -> (version, tag job id, head)."""
    client = app.test_client()
    cuts = {}
    for key in KEYS:
        answer = client.post(f"/api/v1/projects/{key}/releases", json={"ref": "main"},
                             headers=demo_project.headers())
        assert answer.status_code == 202, answer.get_json()
        body = answer.get_json()
        assert body["job"]["enqueued"] is True
        cuts[key] = (body["version"], body["job"]["id"], body["commit"])
    return cuts


@pytest.mark.parametrize("fault", ["flushall", "restart-empty", "restart-persistent"])
def test_redis_failing_mid_job_loses_no_job_and_runs_none_twice(
        app, demo_project, worker_env, private_redis, tmp_path: Path, fault: str) -> None:
    redis = private_redis(persistent=fault == "restart-persistent")
    use_redis(app, redis.url)
    remotes = three_projects(demo_project, tmp_path)
    remotes["demo"].hold()
    cuts = cut_all(app, demo_project)
    log = tmp_path / "worker.log"
    workers = [start_worker(fault_env(worker_env, REDIS_URL=redis.url), log)]
    try:
        wait_for("the first tag push to reach its remote", remotes["demo"].hook_pid)
        assert [job_row(cuts[k][1])["status"] for k in KEYS] == ["running", "queued", "queued"]
        if fault == "flushall":
            redis.client().flushall()
        else:
            redis.restart()
        remotes["demo"].release()

        def all_ended() -> bool:
            if workers[-1].poll() is not None:
                # A worker that lost Redis for good exits; `make run` starts another, so do we.
                workers.append(start_worker(fault_env(worker_env, REDIS_URL=redis.url), log))
            return all(job_row(cuts[k][1])["status"] in ("succeeded", "failed") for k in KEYS)

        wait_for("every tag job to end", all_ended)
    finally:
        for worker in workers:
            stop_worker(worker)
    for key in KEYS:
        version, job_id, head = cuts[key]
        row = job_row(job_id)
        assert (row["status"], row["attempt"]) == ("succeeded", 1), (key, row["error"], log.read_text()[-3000:])
        assert remotes[key].tag(f"v{version}") == ("tag", head)
        assert [line.split()[0] for line in remotes[key].pushed_tags()] == [f"refs/tags/v{version}"]
