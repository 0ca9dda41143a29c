"""A deploy stops when its worker dies (issue 9, finding 5), on real worker processes.

The deploy script traps (or ignores) SIGTERM and starts a child of its own, writing both pids.
Whoever dies — the whole worker, only its work-horse while the parent lives, or only the parent
while the horse runs — neither process outlives the deployment: the script dies with its
work-horse (PR_SET_PDEATHSIG), or is stopped by a work-horse whose parent died, and the reaper
stops the recorded process group (SIGTERM, then SIGKILL). The deployment ends as abandoned, its
environment shows "unknown: last deploy abandoned" until a redeploy succeeds or someone marks it
verified, and no deployment runs twice (the script appends a line per run).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from relapp.extensions import db
from relapp.jobs.deploy import claim
from relapp.models import AuditEvent, Deployment, Environment, utcnow
from relapp.services.reaper import reap
from tests.conftest import csrf_token, run_worker_burst, signed_in
from tests.processes import alive, children, tree_of, wait_for

from . import test_crash
from .test_crash import log_of, reload, start_worker

UNKNOWN = "unknown: last deploy abandoned"

# One line per run in runs.log. While the file `hold` exists the script starts `sleep 300 &`,
# writes its child's pid and its own, and never ends by itself; `hold` says whether SIGTERM is
# trapped (the script goes on, its child dies) or ignored (by both: only SIGKILL ends them).
SCRIPT = textwrap.dedent('''\
    #!/bin/sh
    dir="$(dirname "$0")"
    echo "$RELAPP_ENVIRONMENT $RELAPP_TAG" >> "$dir/runs.log"
    if [ -e "$dir/hold" ]; then
      if [ "$(cat "$dir/hold")" = ignore ]; then
        trap '' TERM
      else
        trap 'echo "TERM trapped" >> "$dir/term.log"' TERM
      fi
      sleep 300 &
      echo "$!" > "$dir/child.pid"
      echo "$$" > "$dir/script.pid.tmp" && mv "$dir/script.pid.tmp" "$dir/script.pid"
      echo "holding"
      while :; do wait; sleep 1; done
    fi
    echo "$RELAPP_TAG" > "$dir/result.$RELAPP_ENVIRONMENT"
    echo "done"
''')


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 2:].split()[1])


def started(pid: int) -> bytes | None:
    """The process's start time (field 22 of its stat), to tell it from a later one of that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()[19]


@contextmanager
def holding_deploy(shop: Any, worker_env: dict[str, str], tmp_path: Path, mode: str = "trap"
                   ) -> Iterator[tuple[subprocess.Popen[bytes], int, int, int, int]]:
    """Release 1.0.0 deploying to qa on a real worker, its script holding: yields the worker, the
    deployment id, its job id, the script's pid and its child's. Whatever happens, every process
    of the worker's tree seen then is killed on the way out."""
    (shop.root / "hold.sh").write_text(SCRIPT)
    (shop.root / "hold").write_text(mode)
    shop.release("1.0.0")
    shop.env("qa").driver = {"kind": "command", "argv": ["/bin/sh", str(shop.root / "hold.sh")],
                             "cwd": str(shop.root), "timeout": 120}
    db.session.commit()
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    db.session.commit()
    worker = start_worker(worker_env, tmp_path / "worker.log")
    seen: dict[int, bytes | None] = {}
    try:
        wait_for("the deploy script to hold", (shop.root / "script.pid").exists)
        script = int((shop.root / "script.pid").read_text())
        child = int((shop.root / "child.pid").read_text())
        seen = {pid: started(pid) for pid in tree_of(worker.pid)}
        assert script in seen and child in seen
        wait_for("the process group to be recorded",
                 lambda: reload(deployment_id).process_group == script)
        row = reload(deployment_id)
        assert row.process_host == socket.gethostname()
        yield worker, deployment_id, row.job_id, script, child
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)
        for pid, start in seen.items():
            if start is not None and started(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def kill(*pids: int) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def worker_pids(worker: subprocess.Popen[bytes], script: int) -> tuple[int, list[int]]:
    """The work-horse (the script's parent) and the worker's other children (its maintenance
    companion, RQ's scheduler)."""
    horse = parent_of(script)
    assert parent_of(horse) == worker.pid
    return horse, [pid for pid in children().get(worker.pid, []) if pid != horse]


def lease_run_out(deployment_id: int) -> None:
    wait_for("the lease to run out", lambda: reload(deployment_id).lease_until < utcnow())


def environment(shop: Any, name: str = "qa") -> Environment:
    db.session.expire_all()
    env = db.session.get(Environment, shop.env(name).id)
    db.session.commit()
    return env


def assert_abandoned_and_unknown(app: Any, shop: Any, deployment_id: int) -> None:
    row = reload(deployment_id)
    assert row.status == "failed" and row.message.startswith("abandoned: the worker stopped")
    assert row.process_group is None and row.process_host is None
    env = environment(shop)
    assert env.unknown_reason == "last deploy abandoned" and env.unknown_since is not None
    event = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "deploy.abandoned", AuditEvent.target == f"deployment:{deployment_id}"))
    db.session.commit()
    assert event.after["environment"] == UNKNOWN
    client = signed_in(app, "vic")
    for page in ("/environments?project=shop", "/?project=shop"):
        assert UNKNOWN in client.get(page).get_data(as_text=True), page
    qa = shop.get("/api/v1/projects/shop/environments").get_json()["environments"][0]
    assert qa["name"] == "qa" and qa["unknown"] == UNKNOWN and qa["unknown_since"]


def redeploy_clears_unknown(app: Any, shop: Any, worker_env: dict[str, str] | None) -> int:
    """Deploy 1.0.0 to qa again without holding: it succeeds and qa is known again."""
    (shop.root / "hold").unlink()
    response = shop.deploy("1.0.0", "qa")
    assert response.status_code == 202, response.get_json()
    retry = response.get_json()["deployment"]["id"]
    db.session.commit()
    if worker_env is not None:
        result = run_worker_burst(worker_env)
        assert result.returncode == 0, result.stderr[-3000:]
    wait_for("the redeploy", lambda: reload(retry).status in ("succeeded", "failed"))
    assert reload(retry).status == "succeeded", reload(retry).message
    assert (shop.root / "result.qa").read_text() == "v1.0.0\n"
    env = environment(shop)
    assert env.unknown_reason is None and env.unknown_since is None
    page = signed_in(app, "vic").get("/environments?project=shop").get_data(as_text=True)
    assert UNKNOWN not in page
    qa = shop.get("/api/v1/projects/shop/environments").get_json()["environments"][0]
    assert (qa["unknown"], qa["unknown_since"]) == (None, None)
    return retry


def assert_each_ran_once(shop: Any, *deployment_ids: int) -> None:
    """The script ran once per deployment, and each deployment was started once."""
    assert (shop.root / "runs.log").read_text().splitlines() == ["qa v1.0.0"] * len(deployment_ids)
    for deployment_id in deployment_ids:
        starts = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "deploy.start", AuditEvent.target == f"deployment:{deployment_id}"))
        db.session.commit()
        assert starts == 1, deployment_id


def test_kill_9_of_the_worker_leaves_no_deploy_process_and_qa_unknown_until_a_redeploy(
        app, shop, worker_env, tmp_path):
    with holding_deploy(shop, worker_env, tmp_path) as (worker, deployment_id, job_id, script, child):
        horse, others = worker_pids(worker, script)
        kill(worker.pid, horse, *others)  # the worker's whole tree, but not the deploy command
        worker.wait(timeout=30)
        wait_for("the script to die with its work-horse (PR_SET_PDEATHSIG)",
                 lambda: not alive(script), deadline=15)
        # What the script left in the background lives on until the reaper stops its group.
        assert alive(child)
        assert not (shop.root / "result.qa").exists()

        lease_run_out(deployment_id)
        report = reap()
        assert report.abandoned == [deployment_id]
        assert report.stopped == {deployment_id: "stopped"}
        assert not alive(child)
        assert "reaper: stopped the deploy's processes (SIGTERM)" in log_of(job_id)
        assert_abandoned_and_unknown(app, shop, deployment_id)
        assert reap().stopped == {}  # the record is cleared: nothing is signalled twice

        retry = redeploy_clears_unknown(app, shop, worker_env)
        assert_each_ran_once(shop, deployment_id, retry)


def test_a_killed_work_horse_is_abandoned_although_its_parent_lives_and_heartbeats(
        app, shop, worker_env, tmp_path):
    """Only the work-horse renews a deploy's lease: the living parent does not keep it."""
    with holding_deploy(shop, worker_env, tmp_path) as (worker, deployment_id, job_id, script, child):
        horse, _ = worker_pids(worker, script)
        kill(horse)
        wait_for("the script to die with its work-horse (PR_SET_PDEATHSIG)",
                 lambda: not alive(script), deadline=15)
        # The worker's own reaper (its maintenance companion) ends it once the lease ran out.
        wait_for("the worker's reaper", lambda: reload(deployment_id).status == "failed")
        wait_for("the reaper to stop the script's child", lambda: not alive(child), deadline=30)
        wait_for("the reaper's log line",
                 lambda: "reaper: stopped the deploy's processes (SIGTERM)" in log_of(job_id))
        assert worker.poll() is None  # the parent lived throughout
        wait_for("the record to be cleared", lambda: reload(deployment_id).process_group is None)
        assert_abandoned_and_unknown(app, shop, deployment_id)
        assert not (shop.root / "result.qa").exists()

        retry = redeploy_clears_unknown(app, shop, None)  # on the same, living worker
        assert_each_ran_once(shop, deployment_id, retry)


def test_a_work_horse_whose_parent_was_killed_stops_its_command(app, shop, worker_env, tmp_path):
    with holding_deploy(shop, worker_env, tmp_path) as (worker, deployment_id, job_id, script, child):
        horse, others = worker_pids(worker, script)
        companion = [pid for pid in others
                     if b"--maintain" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(companion) == 1
        kill(worker.pid)
        worker.wait(timeout=30)
        # The orphaned horse notices, stops the group (the script traps SIGTERM: SIGKILL after
        # the grace) and renews nothing; the companion leaves with its parent.
        wait_for("the orphaned work-horse to stop its command",
                 lambda: not alive(script) and not alive(child), deadline=30)
        assert (shop.root / "term.log").read_text() == "TERM trapped\n"
        wait_for("the work-horse and the maintenance companion to end",
                 lambda: not alive(horse) and not alive(companion[0]), deadline=30)
        assert any(line.startswith("the worker that ran this deploy is gone")
                   for line in log_of(job_id))
        assert reload(deployment_id).status == "running"  # until its lease runs out

        lease_run_out(deployment_id)
        report = reap()
        assert report.abandoned == [deployment_id]
        assert report.stopped == {}  # the work-horse stopped its group and cleared the record
        assert_abandoned_and_unknown(app, shop, deployment_id)
        assert not (shop.root / "result.qa").exists()

        retry = redeploy_clears_unknown(app, shop, worker_env)
        assert_each_ran_once(shop, deployment_id, retry)


def test_a_command_that_ignores_sigterm_is_killed_after_its_worker_died(
        app, shop, worker_env, tmp_path):
    with holding_deploy(shop, worker_env, tmp_path, mode="ignore") as (
            worker, deployment_id, job_id, script, child):
        horse, others = worker_pids(worker, script)
        kill(worker.pid, horse, *others)
        worker.wait(timeout=30)
        wait_for("the script to die with its work-horse (SIGKILL cannot be ignored)",
                 lambda: not alive(script), deadline=15)
        lease_run_out(deployment_id)
        report = reap()
        assert report.abandoned == [deployment_id]
        assert report.stopped == {deployment_id: "killed"}  # SIGTERM was not enough
        assert not alive(child)
        assert "reaper: killed the deploy's processes (SIGKILL: they outlived SIGTERM)" \
            in log_of(job_id)
        assert_abandoned_and_unknown(app, shop, deployment_id)


def test_a_command_that_ignores_sigterm_is_killed_on_cancel(app, shop, worker_env, tmp_path,
                                                            monkeypatch):
    # Nothing renews the lease while the driver waits out its kill grace (5 s): the lease must
    # be longer, or the reaper would abandon the deploy being cancelled (at 60 s by default).
    monkeypatch.setattr(test_crash, "LEASE", "10")
    with holding_deploy(shop, worker_env, tmp_path, mode="ignore") as (
            _worker, deployment_id, job_id, script, child):
        response = shop.post(f"/api/v1/deployments/{deployment_id}/cancel", "rita")
        assert response.status_code == 200, response.get_json()
        db.session.commit()
        wait_for("the cancel", lambda: reload(deployment_id).status == "cancelled")
        assert not alive(script) and not alive(child)
        assert "relapp: stop requested; stopping the process group." in log_of(job_id)
        row = reload(deployment_id)
        assert row.process_group is None and row.process_host is None
        assert environment(shop).unknown_reason is None  # stopped on request, not abandoned
        assert_each_ran_once(shop, deployment_id)


def abandon_without_a_worker(shop: Any) -> int:
    """A deployment to qa claimed by a worker that then vanished, reaped: qa is unknown."""
    shop.release("1.0.0")
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    assert claim(deployment_id, 60) == 1
    db.session.execute(update(Deployment).where(Deployment.id == deployment_id)
                       .values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert reap().abandoned == [deployment_id]
    assert environment(shop).unknown_reason == "last deploy abandoned"
    return deployment_id


def test_mark_verified_ends_the_unknown_state_for_someone_who_may_deploy_there(app, shop):
    abandon_without_a_worker(shop)
    page = "/environments?project=shop"
    url = "/environments/shop/qa/verify"

    viewer = signed_in(app, "vic")
    assert UNKNOWN in viewer.get(page).get_data(as_text=True)
    assert url not in viewer.get(page).get_data(as_text=True)  # no form for a viewer
    refused = viewer.post(url, data={"csrf_token": csrf_token(viewer, page), "note": "x"})
    assert refused.status_code == 403
    assert "Only someone who may deploy to qa" in refused.get_data(as_text=True)

    engineer = signed_in(app, "erin")
    assert url in engineer.get(page).get_data(as_text=True)
    assert engineer.post(url, data={"note": "no token"}).status_code == 400  # CSRF
    assert environment(shop).unknown_reason == "last deploy abandoned"

    done = engineer.post(url, data={"csrf_token": csrf_token(engineer, page),
                                    "note": "checked the hosts: 0.9 runs everywhere"})
    assert done.status_code == 303
    env = environment(shop)
    assert env.unknown_reason is None and env.unknown_since is None
    assert UNKNOWN not in viewer.get(page).get_data(as_text=True)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "environment.verify"))
    db.session.commit()
    assert (event.actor, event.target) == ("erin", "environment:shop/qa")
    assert event.before["unknown_reason"] == "last deploy abandoned"
    assert event.detail == "checked the hosts: 0.9 runs everywhere"

    again = engineer.post(url, data={"csrf_token": csrf_token(engineer, page)})
    assert again.status_code == 409  # nothing left to verify
    assert "qa is not in an unknown state" in again.get_data(as_text=True)


def test_mark_verified_needs_the_deploy_role_of_that_environment(app, shop):
    abandon_without_a_worker(shop)
    db.session.execute(update(Environment).where(Environment.id == shop.env("prod").id).values(
        unknown_reason="last deploy abandoned", unknown_since=utcnow()))
    db.session.commit()
    engineer = signed_in(app, "erin")  # may deploy to qa, not to prod (release and admin only)
    token = csrf_token(engineer, "/environments?project=shop")
    assert engineer.post("/environments/shop/prod/verify",
                         data={"csrf_token": token}).status_code == 403
    assert environment(shop, "prod").unknown_reason == "last deploy abandoned"
    rita = signed_in(app, "rita")
    htmx = rita.post("/environments/shop/prod/verify", headers={"HX-Request": "true"},
                     data={"csrf_token": csrf_token(rita, "/environments?project=shop")})
    assert htmx.status_code == 200 and 'id="env-prod"' in htmx.get_data(as_text=True)
    assert UNKNOWN not in htmx.get_data(as_text=True)
    assert environment(shop, "prod").unknown_reason is None


def test_the_reaper_signals_only_a_group_it_recognises_as_the_deploys(shop, tmp_path):
    """A recorded process-group number may have been reused: the reaper leaves alone a group
    without the deploy's marker, its own group, and groups recorded on another host."""
    deployment_id = abandon_without_a_worker(shop)
    marker = {"RELAPP_DEPLOYMENT_ID": str(deployment_id), "RELAPP_PROJECT": "shop",
              "RELAPP_ENVIRONMENT": "qa"}
    base = {"PATH": os.environ["PATH"]}
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True, env=base)
    other = subprocess.Popen(["sleep", "120"], start_new_session=True,
                             env={**base, **marker, "RELAPP_DEPLOYMENT_ID": str(deployment_id + 1)})
    ours = subprocess.Popen(["sleep", "120"], start_new_session=True, env={**base, **marker})
    try:
        def recorded(pgid: int, host: str | None = None) -> dict[int, str]:
            db.session.execute(update(Deployment).where(Deployment.id == deployment_id).values(
                process_group=pgid, process_host=host or socket.gethostname()))
            db.session.commit()
            return reap().stopped

        assert recorded(stranger.pid) == {deployment_id: "not ours"}
        assert recorded(other.pid) == {deployment_id: "not ours"}
        assert recorded(os.getpgrp()) == {deployment_id: "refused"}
        assert recorded(ours.pid, host="another-host") == {}
        assert reload(deployment_id).process_group == ours.pid  # that host's reaper stops it
        assert stranger.poll() is None and other.poll() is None and ours.poll() is None

        assert recorded(ours.pid) == {deployment_id: "stopped"}
        assert ours.wait(timeout=10) == -signal.SIGTERM
        assert reload(deployment_id).process_group is None
        assert stranger.poll() is None and other.poll() is None
    finally:
        for proc in (stranger, other, ours):
            proc.kill()
            proc.wait(timeout=10)
