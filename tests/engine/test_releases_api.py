"""Cutting, hotfixing and changelogs through the API on the demo repository, with real git and a
real RQ worker; results are checked on the bare remote."""

from __future__ import annotations

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import AuditEvent, Job, Release
from tests.conftest import git, work_queue


def cut(client, demo, **body):
    return client.post("/api/v1/projects/demo/releases", json=body or {"ref": "main"}, headers=demo.headers())


def test_cut_tags_the_next_minor_at_main_head(app, demo_project):
    client = app.test_client()
    head = git("rev-parse", "main", cwd=demo_project.origin)
    response = cut(client, demo_project)
    assert response.status_code == 202, response.get_json()
    data = response.get_json()
    assert data["version"] == "1.3.0" and data["tag"] == "v1.3.0" and data["follows"] == "1.2.0"
    assert data["commit"] == head and data["job"]["status"] == "queued"
    work_queue()
    assert demo_project.remote_tag("v1.3.0") == ("tag", head)
    tagger = git("for-each-ref", "refs/tags/v1.3.0", "--format=%(taggername) %(taggeremail)", cwd=demo_project.origin)
    assert tagger == "Erin <erin@relapp.invalid>"
    shown = client.get("/api/v1/projects/demo/releases/1.3.0", headers=demo_project.headers("vic")).get_json()
    assert shown["state"] == "tagged" and shown["kind"] == "minor" and shown["jobs"][0]["status"] == "succeeded"
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "release.cut")).actor == "erin"


def test_nothing_new_since_the_last_release_is_refused(app, demo_project):
    client = app.test_client()
    assert cut(client, demo_project).status_code == 202
    work_queue()
    again = cut(client, demo_project)
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    assert "nothing" in again.get_json()["detail"].lower()
    assert db.session.scalar(select(Release).where(Release.version == "1.4.0")) is None


def test_major_needs_a_reason_and_breaking_commits_make_a_major(app, demo_project):
    client = app.test_client()
    refused = cut(client, demo_project, ref="main", bump="major")
    assert refused.status_code == 409 and "reason" in refused.get_json()["detail"]
    assert cut(client, demo_project, ref="main", bump="patch").status_code == 400
    ok = cut(client, demo_project, ref="main", bump="major", reason="new public API")
    assert ok.get_json()["version"] == "2.0.0"
    work_queue()
    demo_project.commit_on_main("platform/api.txt", "v2", "feat(platform)!: drop the v1 endpoints")
    assert cut(client, demo_project).get_json()["version"] == "3.0.0"


def test_hotfix_cherry_picks_with_x_onto_a_new_line_branch_and_tags(app, demo_project):
    client = app.test_client()
    cut(client, demo_project)
    work_queue()
    fix = demo_project.commit_on_main("services/payments/rounding.txt", "half-even\n",
                                      "fix(payments): round refunds half-even (#1001)\n\nFixes PAY-42")
    response = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [fix[:12]]},
                           headers=demo_project.headers())
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["version"] == "1.3.1" and response.get_json()["branch"] == "release/1.3"
    work_queue()
    branch_head = git("rev-parse", "release/1.3", cwd=demo_project.origin)
    assert demo_project.remote_tag("v1.3.1") == ("tag", branch_head)
    message = git("log", "-1", "--format=%B", branch_head, cwd=demo_project.origin)
    assert f"(cherry picked from commit {fix})" in message
    assert git("rev-parse", "release/1.3^", cwd=demo_project.origin) == git("rev-parse", "v1.3.0^{commit}", cwd=demo_project.origin)
    shown = client.get("/api/v1/projects/demo/releases/1.3.1", headers=demo_project.headers()).get_json()
    assert shown["kind"] == "hotfix" and shown["base"] == "1.3.0"
    assert shown["fixes_on_main"] == {branch_head: "on main (cherry-picked from it)"}
    changelog = client.get("/api/v1/projects/demo/releases/1.3.1/changelog", headers=demo_project.headers()).get_json()
    assert changelog["since"] == "1.3.0"
    assert [e["subject"] for e in changelog["entries"]] == ["fix(payments): round refunds half-even (#1001)"]
    assert changelog["entries"][0]["issues"] == ["PAY-42"]


def test_a_fix_made_only_on_the_line_is_reported_missing_on_main(app, demo_project):
    client = app.test_client()
    cut(client, demo_project)
    work_queue()
    fix = git("rev-parse", "origin/fix/PAY-42-rounding", cwd=demo_project.work)
    client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [fix]}, headers=demo_project.headers())
    work_queue()
    shown = client.get("/api/v1/projects/demo/releases/1.3.1", headers=demo_project.headers()).get_json()
    assert list(shown["fixes_on_main"].values()) == ["missing on main: merge it back"]


def test_a_line_accepts_fixes_only_unless_forced_with_a_reason(app, demo_project):
    client = app.test_client()
    cut(client, demo_project)
    work_queue()
    feat = demo_project.commit_on_main("services/search/facets.txt", "x", "feat(search): new facets")
    refused = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [feat]},
                          headers=demo_project.headers())
    assert refused.status_code == 409 and feat[:7] in refused.get_json()["detail"]
    forced = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes",
                         json={"commits": [feat], "force_reason": "customer escalation"}, headers=demo_project.headers())
    assert forced.status_code == 202 and forced.get_json()["version"] == "1.3.1"


def test_a_conflicting_cherry_pick_fails_cleanly_and_the_clone_stays_usable(app, demo_project):
    client = app.test_client()
    cut(client, demo_project)
    work_queue()
    first = demo_project.commit_on_main("platform/core.txt", "one\n", "fix(platform): one")
    second = demo_project.commit_on_main("platform/core.txt", "two\n", "fix(platform): two")
    # Picking only the second conflicts: it changes a line the first one wrote.
    client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [second]}, headers=demo_project.headers())
    work_queue()
    failed = db.session.scalar(select(Release).where(Release.version == "1.3.1"))
    job = db.session.scalar(select(Job).where(Job.release_id == failed.id))
    assert failed.state == "failed" and job.status == "failed"
    assert "conflicts in platform/core.txt" in job.error
    assert demo_project.remote_tag("v1.3.1") is None
    ok = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [first, second]},
                     headers=demo_project.headers())
    assert ok.get_json()["version"] == "1.3.2"
    work_queue()
    assert demo_project.remote_tag("v1.3.2") is not None


def test_branch_head_mode_tags_what_the_team_merged_on_the_line(app, demo_project):
    client = app.test_client()
    cut(client, demo_project)
    work_queue()
    none = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"branch_head": True}, headers=demo_project.headers())
    assert none.status_code == 409 and "no branch release/1.3" in none.get_json()["detail"]
    git("fetch", "-q", "--tags", "origin", cwd=demo_project.work)
    git("checkout", "-q", "-b", "release/1.3", "v1.3.0", cwd=demo_project.work)
    (demo_project.work / "platform" / "hot.txt").write_text("hot\n")
    git("add", "platform/hot.txt", cwd=demo_project.work)
    git("commit", "-q", "-m", "fix(platform): hot", cwd=demo_project.work)
    git("push", "-q", "origin", "release/1.3", cwd=demo_project.work)
    head = git("rev-parse", "HEAD", cwd=demo_project.work)
    response = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"branch_head": True}, headers=demo_project.headers())
    assert response.status_code == 202 and response.get_json()["version"] == "1.3.1"
    work_queue()
    assert demo_project.remote_tag("v1.3.1") == ("tag", head)
    again = client.post("/api/v1/projects/demo/releases/1.3.1/hotfixes", json={"branch_head": True}, headers=demo_project.headers())
    assert again.status_code == 409 and "nothing" in again.get_json()["detail"].lower()


def test_tag_jobs_are_idempotent_and_never_move_a_tag(app, demo_project):
    client = app.test_client()
    cut(client, demo_project)
    release = db.session.scalar(select(Release).where(Release.version == "1.3.0"))
    # Someone pushes v1.3.0 by hand at another commit before the job runs.
    git("tag", "v1.3.0", "origin/main~3", cwd=demo_project.work)
    git("push", "-q", "origin", "v1.3.0", cwd=demo_project.work)
    work_queue()
    job = db.session.scalar(select(Job).where(Job.release_id == release.id))
    db.session.refresh(release)
    assert job.status == "failed" and "already exists at another commit" in job.error and "never moves" in job.error
    assert release.state == "failed"
    assert demo_project.remote_tag("v1.3.0")[1] == git("rev-parse", "origin/main~3", cwd=demo_project.work)


def test_a_retried_tag_job_carries_on(app, demo_project):
    from relapp.jobs import run

    client = app.test_client()
    cut(client, demo_project)
    work_queue()
    job = db.session.scalar(select(Job).where(Job.kind == "tag_release"))
    # Same job delivered again: the claim refuses it, and the tag stays as it is.
    assert run(job.id) == "skipped: not queued"
    release = db.session.scalar(select(Release).where(Release.version == "1.3.0"))
    release.state = "pending"
    job.status = "queued"
    db.session.commit()
    assert run(job.id) == "succeeded"
    db.session.rollback()
    assert db.session.scalar(select(Release).where(Release.version == "1.3.0")).state == "tagged"


def test_changelog_between_any_two_releases_as_json_and_markdown(app, demo_project):
    client = app.test_client()
    head = client.get("/api/v1/projects/demo/releases/1.2.0/changelog", headers=demo_project.headers())
    assert head.status_code == 404  # not adopted into the database yet
    runner = app.test_cli_runner()
    assert "Recorded 4 adopted release(s)." in runner.invoke(args=["adopt", "demo", "--record"]).output
    data = client.get("/api/v1/projects/demo/releases/1.2.0/changelog", headers=demo_project.headers()).get_json()
    assert data["since"] == "1.1.0"
    expected = int(git("rev-list", "--count", "1.1.0..rel_1_2_0", cwd=demo_project.origin))
    assert data["commit_count"] == expected
    assert len(data["entries"]) + len(data["merges"]) + len(data["cancelled"]) == expected
    wide = client.get("/api/v1/projects/demo/releases/1.2.0/changelog?since=0.9.0", headers=demo_project.headers()).get_json()
    assert wide["since"] == "0.9.0" and len(wide["entries"]) > len(data["entries"])
    markdown = client.get("/api/v1/projects/demo/releases/1.2.0/changelog?format=markdown", headers=demo_project.headers())
    assert markdown.mimetype == "text/markdown"
    text = markdown.get_data(as_text=True)
    assert "payments" in text and "https://jira.example.com/browse/PAY-" in text


def test_adopt_reports_the_demo_tags(app, demo_project):
    result = app.test_cli_runner().invoke(args=["adopt", "demo"])
    out = result.output
    assert result.exit_code == 0, out
    for tag, version in (("v0.9", "0.9.0"), ("release-1.0.0", "1.0.0"), ("1.1.0", "1.1.0"), ("rel_1_2_0", "1.2.0")):
        assert f"{tag}" in out and version in out
    assert "backup-before-rewrite" in out.split("Not recognised")[1]
    assert "main follows 1.2.0; the next release would be 1.3.0" in out


def test_roles_and_tokens(app, demo_project):
    client = app.test_client()
    assert client.get("/api/v1/projects").status_code == 401
    assert client.get("/api/v1/projects", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/projects", headers=demo_project.headers("vic")).status_code == 200
    forbidden = client.post("/api/v1/projects/demo/releases", json={}, headers=demo_project.headers("quinn"))
    assert forbidden.status_code == 403 and forbidden.mimetype == "application/problem+json"
    assert client.get("/api/v1/projects/nope/releases", headers=demo_project.headers()).status_code == 404
    bad = client.post("/api/v1/projects/demo/releases", data="{", headers={**demo_project.headers(), "Content-Type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.get_json()["detail"]


def test_idempotency_key_replays_the_first_answer(app, demo_project):
    client = app.test_client()
    headers = {**demo_project.headers(), "Idempotency-Key": "cut-1"}
    first = client.post("/api/v1/projects/demo/releases", json={"ref": "main"}, headers=headers)
    second = client.post("/api/v1/projects/demo/releases", json={"ref": "main"}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.headers["Idempotent-Replayed"] == "true" and second.get_json() == first.get_json()
    assert len(db.session.scalars(select(Release)).all()) == 1
    other = client.post("/api/v1/projects/demo/releases", json={"ref": "main", "bump": "major"}, headers=headers)
    assert other.status_code == 422


def test_openapi_document_lists_the_operations(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert "post" in doc["paths"]["/api/v1/projects/{project}/releases"]
    assert "post" in doc["paths"]["/api/v1/projects/{project}/releases/{version}/hotfixes"]
