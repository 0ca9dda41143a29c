"""Retrying a failed tag or hotfix job on the demo repository, with real git (a bare remote whose
pre-receive hook refuses tags for a while, tags pushed by hand, a conflicting cherry-pick) and a
real RQ worker: the release keeps its version and tag, and the line never skips a number."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from markupsafe import escape
from sqlalchemy import select

from relapp.extensions import db
from relapp.models import AuditEvent, Job, Release
from tests.conftest import csrf_token, git, signed_in, work_queue

HX = {"HX-Request": "true"}
REFUSE_TAGS = """#!/bin/sh
while read old new ref; do
  case "$ref" in refs/tags/*) echo "tags are frozen by policy" >&2; exit 1;; esac
done
"""


def refuse_tags(origin: Path, on: bool = True) -> None:
    """Install (or remove) a pre-receive hook on the bare remote that refuses every tag push."""
    hook = origin / "hooks" / "pre-receive"
    if not on:
        hook.unlink()
        return
    hook.write_text(REFUSE_TAGS)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def git_may_fail(*args: str, cwd: Path) -> int:
    """Run git for set-up where failing is the point (a conflicting cherry-pick); its exit code."""
    env = dict(os.environ, GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="t@example.com", GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=False, capture_output=True).returncode


def release(version: str) -> Release:
    db.session.rollback()
    return db.session.scalar(select(Release).where(Release.version == version))


def jobs_of(version: str) -> list[Job]:
    return list(db.session.scalars(select(Job).where(Job.release_id == release(version).id).order_by(Job.id)))


def cut(client, demo):
    return client.post("/api/v1/projects/demo/releases", json={"ref": "main"}, headers=demo.headers())


def retry(client, demo, version: str, user: str = "erin", **headers: str):
    return client.post(f"/api/v1/projects/demo/releases/{version}/retry",
                       headers={**demo.headers(user), **headers})


def failed_cut(client, demo) -> str:
    """Cut 1.3.0 while the remote refuses tags: its tag job fails. Returns main's head."""
    refuse_tags(demo.origin)
    assert cut(client, demo).status_code == 202
    work_queue()
    return git("rev-parse", "main", cwd=demo.origin)


def test_a_tag_the_remote_refused_is_retried_with_the_same_version_and_tag(app, demo_project):
    client = app.test_client()
    head = failed_cut(client, demo_project)
    first = jobs_of("1.3.0")[0]
    assert release("1.3.0").state == "failed" and first.status == "failed"
    assert first.error == ("The remote refused tag v1.3.0: [remote rejected] (pre-receive hook declined). "
                           "Nothing was forced; once the remote accepts it, retry 1.3.0.")
    assert demo_project.remote_tag("v1.3.0") is None

    # Still refused by the remote: the retry fails again, cleanly, with the same version.
    again = retry(client, demo_project, "1.3.0")
    assert again.status_code == 202, again.get_json()
    work_queue()
    assert release("1.3.0").state == "failed" and [j.status for j in jobs_of("1.3.0")] == ["failed", "failed"]

    refuse_tags(demo_project.origin, on=False)
    answer = retry(client, demo_project, "1.3.0", user="rita")
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert (body["version"], body["tag"], body["commit"], body["follows"]) == ("1.3.0", "v1.3.0", head, "1.2.0")
    assert body["release"]["state"] == "pending" and body["job"]["status"] == "queued"
    assert body["job"]["kind"] == "tag_release" and body["job"]["id"] not in {j.id for j in jobs_of("1.3.0")[:2]}
    work_queue()
    assert release("1.3.0").state == "tagged" and jobs_of("1.3.0")[-1].status == "succeeded"
    assert demo_project.remote_tag("v1.3.0") == ("tag", head)
    tagger = git("for-each-ref", "refs/tags/v1.3.0", "--format=%(taggername)", cwd=demo_project.origin)
    assert tagger == "Rita"  # the tag names the person who retried it

    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "release.retry")
                               .order_by(AuditEvent.id)).all()[-1]
    assert event.actor == "rita" and event.after["version"] == "1.3.0" and event.after["tag"] == "v1.3.0"
    assert event.before["job"] == jobs_of("1.3.0")[1].id

    done = retry(client, demo_project, "1.3.0")
    assert done.status_code == 409 and done.mimetype == "application/problem+json"
    assert done.get_json()["detail"] == "1.3.0 is tagged already; there is nothing to retry."
    # The next cut follows 1.3.0: no number was skipped.
    demo_project.commit_on_main("platform/next.txt", "next\n", "feat(platform): next")
    assert cut(client, demo_project).get_json()["version"] == "1.4.0"


def test_a_version_taken_at_another_commit_is_refused_and_a_tag_already_at_the_right_commit_counts_as_done(
        app, demo_project):
    client = app.test_client()
    head = failed_cut(client, demo_project)
    refuse_tags(demo_project.origin, on=False)
    elsewhere = git("rev-parse", "origin/main~3", cwd=demo_project.work)
    git("tag", "v1.3.0", elsewhere, cwd=demo_project.work)
    git("push", "-q", "origin", "v1.3.0", cwd=demo_project.work)

    refused = retry(client, demo_project, "1.3.0")
    assert refused.status_code == 409
    detail = refused.get_json()["detail"]
    assert f"Tag v1.3.0 for 1.3.0 now exists on the remote at commit {elsewhere[:10]}, not at {head[:10]}" in detail
    assert refused.get_json()["type"].endswith("version_taken")
    assert release("1.3.0").state == "failed" and len(jobs_of("1.3.0")) == 1

    # Settled by hand: the wrong tag deleted, then the retry's job finds it back at another
    # commit before it runs, and fails loudly without moving it.
    git("push", "-q", "origin", ":refs/tags/v1.3.0", cwd=demo_project.work)
    assert retry(client, demo_project, "1.3.0").status_code == 202
    git("push", "-q", "origin", "v1.3.0", cwd=demo_project.work)
    work_queue()
    job = jobs_of("1.3.0")[-1]
    assert job.status == "failed" and release("1.3.0").state == "failed"
    assert f"Tag v1.3.0 already exists at another commit ({elsewhere[:10]}); relapp never moves a tag" in job.error
    assert demo_project.remote_tag("v1.3.0")[1] == elsewhere

    # Someone pushed the right tag by hand (as a job that failed after its push would have):
    # the retry takes it as done and leaves the tag object as it is.
    git("push", "-q", "origin", ":refs/tags/v1.3.0", cwd=demo_project.work)
    git("tag", "-f", "-a", "-m", "by hand", "v1.3.0", head, cwd=demo_project.work)
    git("push", "-q", "origin", "v1.3.0", cwd=demo_project.work)
    by_hand = git("rev-parse", "refs/tags/v1.3.0", cwd=demo_project.origin)
    assert retry(client, demo_project, "1.3.0").status_code == 202
    work_queue()
    assert release("1.3.0").state == "tagged"
    assert git("rev-parse", "refs/tags/v1.3.0", cwd=demo_project.origin) == by_hand


def test_a_conflicting_hotfix_fails_again_on_retry_then_builds_once_resolved_on_the_branch(app, demo_project):
    client = app.test_client()
    assert cut(client, demo_project).status_code == 202
    work_queue()
    demo_project.commit_on_main("platform/core.txt", "one\n", "fix(platform): one")
    second = demo_project.commit_on_main("platform/core.txt", "two\n", "fix(platform): two")
    started = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [second]},
                          headers=demo_project.headers())
    assert started.get_json()["version"] == "1.3.1"
    work_queue()
    assert release("1.3.1").state == "failed"
    assert "retry 1.3.1" in jobs_of("1.3.1")[0].error

    # Nothing changed on the branch: the retry fails the same way and leaves the clone usable.
    answer = retry(client, demo_project, "1.3.1")
    assert answer.status_code == 202
    body = answer.get_json()
    assert (body["version"], body["tag"], body["base"], body["branch"]) == ("1.3.1", "v1.3.1", "1.3.0", "release/1.3")
    assert body["job"]["kind"] == "hotfix"
    work_queue()
    failures = jobs_of("1.3.1")
    assert [j.status for j in failures] == ["failed", "failed"] and "conflicts in platform/core.txt" in failures[1].error
    assert release("1.3.1").state == "failed" and demo_project.remote_tag("v1.3.1") is None

    # An engineer resolves the conflict on the line's branch with cherry-pick -x, adapting the
    # fix to the line (so picking it again would conflict again), and pushes.
    git("fetch", "-q", "origin", cwd=demo_project.work)
    git("checkout", "-q", "-B", "release/1.3", "origin/release/1.3", cwd=demo_project.work)
    code = git_may_fail("cherry-pick", "-x", second, cwd=demo_project.work)
    assert code != 0
    (demo_project.work / "platform" / "core.txt").write_text("two, as the 1.3 line needs it\n")
    git("add", "platform/core.txt", cwd=demo_project.work)
    git("-c", "core.editor=true", "cherry-pick", "--continue", cwd=demo_project.work)
    git("push", "-q", "origin", "release/1.3", cwd=demo_project.work)
    resolved = git("rev-parse", "HEAD", cwd=demo_project.work)

    assert retry(client, demo_project, "1.3.1").status_code == 202
    work_queue()
    assert release("1.3.1").state == "tagged" and release("1.3.1").sha == resolved
    assert demo_project.remote_tag("v1.3.1") == ("tag", resolved)
    assert git("rev-parse", "release/1.3", cwd=demo_project.origin) == resolved

    # The next hotfix after the retried one gets the next number.
    third = demo_project.commit_on_main("platform/other.txt", "x\n", "fix(platform): three")
    nxt = client.post("/api/v1/projects/demo/releases/1.3.1/hotfixes", json={"commits": [third]},
                      headers=demo_project.headers())
    assert nxt.get_json()["version"] == "1.3.2"
    work_queue()
    assert release("1.3.2").state == "tagged"
    git("merge-base", "--is-ancestor", "v1.3.1", "v1.3.2", cwd=demo_project.origin)


def test_a_hotfix_whose_tag_was_refused_after_its_branch_was_pushed_is_tagged_without_picking_again(
        app, demo_project):
    client = app.test_client()
    assert cut(client, demo_project).status_code == 202
    work_queue()
    fix = demo_project.commit_on_main("platform/hot.txt", "hot\n", "fix(platform): hot")
    refuse_tags(demo_project.origin)
    client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [fix]},
                headers=demo_project.headers())
    work_queue()
    built = git("rev-parse", "release/1.3", cwd=demo_project.origin)
    assert release("1.3.1").state == "failed" and release("1.3.1").sha == built
    assert "The remote refused tag v1.3.1" in jobs_of("1.3.1")[0].error

    refuse_tags(demo_project.origin, on=False)
    assert retry(client, demo_project, "1.3.1").status_code == 202
    work_queue()
    assert release("1.3.1").state == "tagged" and demo_project.remote_tag("v1.3.1") == ("tag", built)
    # The branch was not built a second time: one cherry-picked fix on it, the same head.
    assert git("rev-parse", "release/1.3", cwd=demo_project.origin) == built
    assert git("rev-list", "--count", "v1.3.0..release/1.3", cwd=demo_project.origin) == "1"


def test_a_failed_hotfix_with_a_later_one_on_its_line_is_not_retried_out_of_order(app, demo_project):
    client = app.test_client()
    assert cut(client, demo_project).status_code == 202
    work_queue()
    first = demo_project.commit_on_main("platform/core.txt", "one\n", "fix(platform): one")
    second = demo_project.commit_on_main("platform/core.txt", "two\n", "fix(platform): two")
    client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [second]},
                headers=demo_project.headers())
    work_queue()
    ok = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [first, second]},
                     headers=demo_project.headers())
    assert ok.get_json()["version"] == "1.3.2"
    work_queue()
    refused = retry(client, demo_project, "1.3.1")
    assert refused.status_code == 409
    assert refused.get_json()["detail"] == ("1.3.2 was made after 1.3.1 failed, so a retry would tag 1.3.1 after "
                                            "it, out of order; start a new hotfix instead.")
    assert len(jobs_of("1.3.1")) == 1


def test_who_may_retry_and_how_the_api_answers(app, demo_project):
    client = app.test_client()
    failed_cut(client, demo_project)
    for user in ("vic", "quinn"):
        denied = retry(client, demo_project, "1.3.0", user=user)
        assert denied.status_code == 403 and denied.mimetype == "application/problem+json"
    assert retry(client, demo_project, "9.9.9").status_code == 404
    assert retry(client, demo_project, "not-a-version").status_code == 400
    assert client.post("/api/v1/projects/demo/releases/1.3.0/retry").status_code == 401
    assert len(jobs_of("1.3.0")) == 1 and release("1.3.0").state == "failed"

    # The same Idempotency-Key replays the first answer: one retry, one new job.
    first = retry(client, demo_project, "1.3.0", user="ada", **{"Idempotency-Key": "retry-1"})
    replay = retry(client, demo_project, "1.3.0", user="ada", **{"Idempotency-Key": "retry-1"})
    assert first.status_code == replay.status_code == 202
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json()["job"]["id"] == first.get_json()["job"]["id"] and len(jobs_of("1.3.0")) == 2
    # While its job is queued, another retry is refused.
    busy = retry(client, demo_project, "1.3.0")
    assert busy.status_code == 409
    assert busy.get_json()["detail"] == f"The tag job #{first.get_json()['job']['id']} of 1.3.0 is still queued; wait for it to end."

    spec = client.get("/api/v1/openapi.json").get_json()
    op = spec["paths"]["/api/v1/projects/{project}/releases/{version}/retry"]["post"]
    assert "202" in op["responses"] and [p["name"] for p in op["parameters"]] == ["project", "version"]


def test_two_retries_at_once_one_wins(app, demo_project):
    client = app.test_client()
    failed_cut(client, demo_project)
    refuse_tags(demo_project.origin, on=False)

    def ask(user: str) -> tuple[int, dict]:
        with app.test_client() as own:
            response = retry(own, demo_project, "1.3.0", user=user)
            return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(ask, ["erin", "rita"]))
    assert sorted(status for status, _ in answers) == [202, 409], answers
    assert len(jobs_of("1.3.0")) == 2
    assert len(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "release.retry")).all()) == 1
    work_queue()
    assert release("1.3.0").state == "tagged"


def test_the_release_page_offers_retry_to_those_who_may_and_the_server_checks(app, demo_project):
    failed_cut(app.test_client(), demo_project)
    refuse_tags(demo_project.origin, on=False)
    error = jobs_of("1.3.0")[0].error

    viewer = signed_in(app, "vic")
    page = viewer.get("/releases/demo/1.3.0").get_data(as_text=True)
    assert 'id="retry"' in page and "The tag job failed" in page
    assert str(escape(error)) in page
    assert 'id="retry-button"' not in page and "/releases/demo/1.3.0/retry" not in page
    refused = viewer.post("/releases/demo/1.3.0/retry", headers={**HX, "X-CSRFToken": csrf_token(viewer)})
    assert refused.status_code == 403

    manager = signed_in(app, "rita")
    page = manager.get("/releases/demo/1.3.0").get_data(as_text=True)
    form = re.search(r'<form method="post" action="/releases/demo/1.3.0/retry" hx-post="/releases/demo/1.3.0/retry"'
                     r' hx-target="#retry" hx-swap="innerHTML">\s*<input type="hidden" name="csrf_token" value="[^"]+">',
                     page)
    assert form is not None and 'id="retry-button"' in page
    # Without the CSRF token nothing happens.
    assert manager.post("/releases/demo/1.3.0/retry", headers=HX).status_code == 400
    assert len(jobs_of("1.3.0")) == 1 and release("1.3.0").state == "failed"

    clicked = manager.post("/releases/demo/1.3.0/retry", headers={**HX, "X-CSRFToken": csrf_token(manager)})
    assert clicked.status_code == 200 and clicked.headers["HX-Trigger"] == "board-changed"
    job = jobs_of("1.3.0")[-1]
    fragment = clicked.get_data(as_text=True)
    assert f'href="/jobs/{job.id}">Follow the log (job #{job.id})' in fragment and "<html" not in fragment
    assert "pending" in fragment and release("1.3.0").state == "pending"
    reloaded = manager.get("/releases/demo/1.3.0").get_data(as_text=True)
    assert 'id="retry"' not in reloaded and f'href="/jobs/{job.id}"' in reloaded
    work_queue()
    assert release("1.3.0").state == "tagged"
