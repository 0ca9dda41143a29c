"""The release page (changelog, since, downloads, deployments, decisions, hotfix form and its
candidates), the hotfix flow, escaping of commit text, and the job log view."""

from __future__ import annotations

import json

from sqlalchemy import select

from relapp.extensions import db
from relapp.joblog import JobLog
from relapp.models import Deployment, Release
from relapp.services import releases as svc
from relapp.services.projects import get_project
from tests.conftest import work_queue

from .conftest import HOSTILE, counts, signed_in, token, user

HX = {"HX-Request": "true"}


def test_release_page_shows_facts_and_the_changelog_with_issue_links(app, released):
    client = signed_in(app, "vic")
    response = client.get("/releases/demo/1.3.0")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    release = svc.get_release(get_project("demo"), "1.3.0")
    assert f'id="release-{release.id}"' in html
    assert "v1.3.0" in html and release.sha[:12] in html and "cut by Erin" in html
    assert 'href="/releases/demo/1.2.0">1.2.0</a>' in html  # follows
    log, _ = svc.changelog(get_project("demo"), release)
    entry = next(e for e in log.entries if e.issues)
    assert entry.short_sha in html
    assert f'href="https://jira.example.com/browse/{entry.issues[0]}"' in html
    assert f"{len(log.entries)} commits since 1.2.0" in html
    # A viewer gets no hotfix form.
    assert 'id="hotfix"' not in html
    # Compared with an older release, the changelog is longer.
    wider, _ = svc.changelog(get_project("demo"), release, since="1.1.0")
    since = client.get("/releases/demo/1.3.0?since=1.1.0").get_data(as_text=True)
    assert f"{len(wider.entries)} commits since 1.1.0" in since and len(wider.entries) > len(log.entries)
    assert client.get("/releases/demo/1.3.0?since=7.7.7").status_code == 404
    assert client.get("/releases/demo/9.9.9").status_code == 404


def test_changelog_downloads_are_markdown_and_json_for_signed_in_people(app, released):
    anonymous = app.test_client()
    assert anonymous.get("/releases/demo/1.3.0/changelog.md").status_code == 302
    client = signed_in(app, "vic")
    md = client.get("/releases/demo/1.3.0/changelog.md")
    assert md.status_code == 200 and md.mimetype == "text/markdown"
    text = md.get_data(as_text=True)
    assert text.startswith("# Demo shop 1.3.0 (since 1.2.0)\n") and "## payments" in text
    assert "[PAY-" in text and "](https://jira.example.com/browse/PAY-" in text
    assert 'filename="demo-1.3.0.md"' in md.headers["Content-Disposition"]
    data = client.get("/releases/demo/1.3.0/changelog.json")
    assert data.mimetype == "application/json"
    body = json.loads(data.get_data(as_text=True))
    assert body["version"] == "1.3.0" and body["since"] == "1.2.0" and body["entries"]
    since = json.loads(client.get("/releases/demo/1.3.0/changelog.json?since=1.1.0").get_data(as_text=True))
    assert since["since"] == "1.1.0" and len(since["entries"]) > len(body["entries"])


def test_release_page_lists_deployments_with_log_links_and_decisions_with_bugs(app, released):
    engineer = signed_in(app, "erin")
    engineer.post("/releases/demo/1.3.0/deployments", headers={**HX, "X-CSRFToken": token(engineer)},
                  data={"env": "qa"})
    work_queue()
    qa = signed_in(app, "quinn")
    qa.post("/releases/demo/1.3.0/decisions", headers={**HX, "X-CSRFToken": token(qa)},
            data={"env": "qa", "decision": "no-go", "comment": "Totals wrong " + HOSTILE[0], "bugs": "PAY-42"})
    deployment = db.session.scalar(select(Deployment))
    html = qa.get("/releases/demo/1.3.0").get_data(as_text=True)
    assert f'id="deployment-{deployment.id}"' in html and f'href="/jobs/{deployment.job_id}"' in html
    assert '<span class="badge succeeded">succeeded</span>' in html
    assert '<span class="badge no-go">no-go</span> in <strong>qa</strong>' in html
    assert 'href="https://jira.example.com/browse/PAY-42"' in html
    assert "Totals wrong &lt;img src=x onerror=alert(1)&gt;" in html and HOSTILE[0] not in html


def test_hostile_commit_messages_are_escaped_on_the_release_page(app, released):
    released.commit_on_main("platform/evil.txt", "x\n", f"fix(platform): {HOSTILE[0]} {HOSTILE[1]} (#1010)")
    svc.cut(get_project("demo"), user("erin"))
    work_queue()
    client = signed_in(app, "erin")
    for path in ("/releases/demo/1.4.0", "/releases/demo/1.3.0/hotfix"):  # changelog; hotfix candidates
        html = client.get(path).get_data(as_text=True)
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path
        assert "&lt;div hx-get=/x hx-trigger=load&gt;" in html, path
        assert HOSTILE[0] not in html and HOSTILE[1] not in html


def test_hotfix_form_offers_fix_commits_and_starts_a_hotfix(app, released):
    fix = released.commit_on_main("services/payments/round.txt", "even\n",
                                  "fix(payments): round refunds half-even (#1020)\n\nFixes PAY-77")
    feat = released.commit_on_main("services/search/f.txt", "f\n", "feat(search): facets v2 (#1021)")
    client = signed_in(app, "erin")
    page = client.get("/releases/demo/1.3.0").get_data(as_text=True)
    assert 'id="hotfix" hx-get="/releases/demo/1.3.0/hotfix" hx-trigger="revealed"' in page
    html = client.get("/releases/demo/1.3.0/hotfix", headers=HX).get_data(as_text=True)
    assert html.lstrip().startswith('<section class="box" id="hotfix">') and "<html" not in html
    assert f'name="commits" value="{fix}"' in html and f'value="{feat}"' not in html
    assert 'href="https://jira.example.com/browse/PAY-77"' in html
    assert "1 other commit since 1.3.0" in html
    viewer = signed_in(app, "vic")
    assert viewer.get("/releases/demo/1.3.0/hotfix").status_code == 403
    before = counts()
    assert viewer.post("/releases/demo/1.3.0/hotfixes", headers={**HX, "X-CSRFToken": token(viewer)},
                       data={"commits": fix}).status_code == 403
    refused = client.post("/releases/demo/1.3.0/hotfixes", headers={**HX, "X-CSRFToken": token(client)},
                          data={"extra": feat})
    assert refused.status_code == 409 and "accepts fixes only" in refused.get_data(as_text=True)
    assert refused.headers["HX-Retarget"] == "#alerts"
    assert counts() == before
    started = client.post("/releases/demo/1.3.0/hotfixes", headers={**HX, "X-CSRFToken": token(client)},
                          data={"commits": fix})
    assert started.status_code == 200 and started.headers["HX-Redirect"] == "/releases/demo/1.3.1"
    work_queue()
    hotfix = db.session.scalar(select(Release).where(Release.version == "1.3.1"))
    assert hotfix.state == "tagged" and hotfix.kind == "hotfix" and hotfix.base.version == "1.3.0"
    page = client.get("/releases/demo/1.3.1").get_data(as_text=True)
    assert "Hotfix 1.3.1 started on release/1.3" in page  # the flashed message
    assert "Fixes in this hotfix" in page and "on main (cherry-picked from it)" in page
    assert 'href="/releases/demo/1.3.0">1.3.0</a>' in page
    base = client.get("/releases/demo/1.3.0").get_data(as_text=True)
    assert 'href="/releases/demo/1.3.1">1.3.1</a>' in base
    # The board shows the hotfix card.
    assert 'data-version="1.3.1"' in client.get("/").get_data(as_text=True)


def test_job_page_renders_the_stored_log_and_connects_the_stream_after_it(app, released):
    client = signed_in(app, "erin")
    client.post("/releases/demo/1.3.0/deployments", headers={**HX, "X-CSRFToken": token(client)},
                data={"env": "qa"})
    deployment = db.session.scalar(select(Deployment))
    queued = client.get(f"/jobs/{deployment.job_id}").get_data(as_text=True)
    assert 'data-finished="0"' in queued and f'data-stream="/jobs/{deployment.job_id}/stream?after=0"' in queued
    assert "/static/joblog.js" in queued
    work_queue()
    joblog = JobLog(deployment.job_id)
    db.session.commit()  # end the read that found the last line number before the line's own write
    joblog.write("note: " + HOSTILE[1])
    response = client.get(f"/jobs/{deployment.job_id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "qa now runs v1.3.0" in html and 'data-finished="1"' in html
    assert '<span class="badge succeeded" id="job-status">succeeded</span>' in html
    last = max(int(n) for n in __import__("re").findall(r'data-seq="(\d+)"', html))
    assert f'data-last-seq="{last}"' in html and f"stream?after={last}" in html
    assert "note: &lt;div hx-get=/x hx-trigger=load&gt;" in html and HOSTILE[1] not in html
    assert client.get("/jobs/999999").status_code == 404
    assert app.test_client().get(f"/jobs/{deployment.job_id}").status_code == 302


def test_the_adoption_page_shows_how_the_demo_tags_were_read(app, demo_project):
    from .conftest import signed_in

    html = signed_in(app, "vic").get("/projects/demo/adoption").get_data(as_text=True)
    for tag, version in (("v0.9", "0.9.0"), ("release-1.0.0", "1.0.0"), ("1.1.0", "1.1.0"), ("rel_1_2_0", "1.2.0")):
        assert f"<code>{tag}</code></td><td>{version}</td>" in html
    assert "<code>backup-before-rewrite</code>" in html.split('id="unknown"')[1]
    assert "the next release cut from it would be <strong>1.3.0</strong>" in html
    assert "follows\n    <strong>1.2.0</strong>" in html
