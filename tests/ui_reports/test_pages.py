"""Every report page renders for a viewer with the demo history; hostile text is escaped."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from relapp.extensions import db
from relapp.models import Decision, Deployment, utcnow

from .conftest import signed_in

HOSTILE = ('<img src=x onerror=alert(1)>', '<div hx-get=/x hx-trigger=load>')
PAGES = ["/environments", "/environments?project=demo", "/train", "/train?project=demo", "/audit", "/me",
         "/releases/demo/1.5.0/evidence"]


@pytest.mark.parametrize("url", PAGES)
def test_each_page_renders_for_a_viewer(app, history, url):
    response = signed_in(app, "vic").get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    if url.startswith(("/environments", "/audit")):  # the pages that also serve an htmx fragment
        assert "HX-Request" in response.headers.get("Vary", "")


@pytest.mark.parametrize("url", ["/environments", "/train", "/audit", "/me", "/releases/demo/1.5.0/evidence"])
def test_pages_need_sign_in(app, history, url):
    response = app.test_client().get(url)
    assert response.status_code in (302, 401)
    assert "/login" in response.headers.get("Location", "/login")


def test_environments_page_shows_what_runs_where_and_what_next_lacks(app, history):
    html = signed_in(app, "vic").get("/environments").get_data(as_text=True)
    for env, version, by in (("qa", "1.7.0", "erin"), ("beta", "1.6.0", "erin"), ("prod", "1.5.0", "rita")):
        card = re.search(rf'id="env-{env}".*?</article>', html, re.DOTALL).group(0)
        assert f">{version}</a>" in card and f"<dd>{by}</dd>" in card
        assert 'class="badge go">go</span>' in card
    beta = re.search(r'id="env-beta".*?</article>', html, re.DOTALL).group(0)
    assert "Not in prod yet" in beta and "changes between 1.5.0 and 1.6.0" in beta
    assert "/releases/demo/1.6.0?since=1.5.0" in beta
    # A viewer sees no lock or freeze forms.
    assert "Lock or freeze" not in html


def test_the_changes_count_is_the_changelog_between_the_two_versions(app, history):
    from relapp.services import environments, releases

    rows = {r.env.name: r for r in environments.environments_overview(history.project)}
    log, _ = releases.changelog(history.project, history.releases["1.6.0"], since="1.5.0")
    assert rows["beta"].behind.state == "behind"
    assert rows["beta"].behind.count == len(log.entries) > 0
    assert [e.sha for e in rows["beta"].behind.entries] == [e.sha for e in log.entries[:5]]
    assert rows["prod"].behind is None


def test_drift_and_deploy_in_progress_are_shown(app, history):
    envs = {e.name: e for e in history.project.environments}
    envs["beta"].observed_version, envs["beta"].observed_at = "v1.5.0", utcnow()
    envs["prod"].observed_version, envs["prod"].observed_at = "v1.5.0", utcnow()
    db.session.add(Deployment(release_id=history.releases["1.7.0"].id, environment_id=envs["beta"].id,
                              status="running", requested_by_id=history.users["erin"].id,
                              created_at=utcnow() - timedelta(minutes=2)))
    db.session.commit()
    html = signed_in(app, "vic").get("/environments").get_data(as_text=True)
    beta = re.search(r'id="env-beta".*?</article>', html, re.DOTALL).group(0)
    prod = re.search(r'id="env-prod".*?</article>', html, re.DOTALL).group(0)
    assert "drift: runs v1.5.0, recorded 1.6.0" in beta
    assert "running</span>\n    1.7.0 by erin" in beta
    assert "drift" not in prod and "version URL agrees" in prod


def test_environments_fragment_for_htmx(app, history):
    response = signed_in(app, "vic").get("/environments", headers={"HX-Request": "true", "HX-Target": "environments"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="environments"') and "<html" not in html


def test_train_page_plots_with_titles_and_tables(app, history):
    html = signed_in(app, "vic").get("/train").get_data(as_text=True)
    for chart in ("chart-lead", "chart-stages", "chart-cadence", "chart-hotfixes", "chart-weeks"):
        assert f'<svg class="chart" id="{chart}"' in html
        assert f'aria-labelledby="{chart}-title"' in html
    assert "<title>1.3.0: cut " in html and "12.0 days</title>" in html
    assert "1 / 4" in html  # reached prod within a week
    assert "<code>0 9 * * MON</code>" in html
    assert re.search(r"next cut Mon \d\d \w{3} \d{4}, 09:00 Europe/Berlin", html)
    assert 'id="train-releases"' in html and 'id="train-weeks"' in html
    assert "<script" not in html.split("</head>")[1]


def test_evidence_lists_decisions_with_bug_links_deploys_and_changelog(app, history):
    html = signed_in(app, "vic").get("/releases/demo/1.5.0/evidence").get_data(as_text=True)
    decisions = re.search(r'id="evidence-decisions".*?</table>', html, re.DOTALL).group(0)
    assert decisions.count("<tr id=\"decision-") == 4
    assert "Refunds are rounded wrong" in decisions
    assert '<a href="https://jira.example.com/browse/PAY-12" rel="noopener noreferrer">PAY-12</a>' in decisions
    deployments = re.search(r'id="evidence-deployments".*?</table>', html, re.DOTALL).group(0)
    assert deployments.count("<tr id=\"deployment-") == 4 and "health check failed" in deployments
    assert "<code>v1.5.0</code>" in html and history.releases["1.5.0"].sha in html
    assert "Cut by</th><td>erin" in html
    assert "changes since 1.4.0" in html


def test_evidence_of_a_line_lists_its_hotfixes(app, history):
    html = signed_in(app, "vic").get("/releases/demo/1.4.0/evidence").get_data(as_text=True)
    assert 'href="/releases/demo/1.4.1/evidence">1.4.1</a>' in html
    hotfix = signed_in(app, "vic").get("/releases/demo/1.4.1/evidence").get_data(as_text=True)
    assert 'Hotfix of</th>' in hotfix


def test_evidence_of_an_unknown_release_is_404(app, history):
    response = signed_in(app, "vic").get("/releases/demo/9.9.9/evidence")
    assert response.status_code == 404 and "has no release 9.9.9" in response.get_data(as_text=True)


def test_hostile_text_is_escaped_everywhere(app, history):
    envs = {e.name: e for e in history.project.environments}
    release = history.releases["1.7.0"]
    db.session.add(Decision(release_id=release.id, environment_id=envs["qa"].id, decision="no-go",
                            comment=HOSTILE[0] + HOSTILE[1], bugs=["PAY-1"], by_id=history.users["quinn"].id,
                            created_at=utcnow()))
    envs["prod"].locked, envs["prod"].lock_reason = True, HOSTILE[1]
    envs["beta"].observed_version, envs["beta"].observed_error = HOSTILE[0], None
    history.project.issue_url_template = "javascript:alert(1)//{key}"
    from relapp.services import audit
    audit.record(history.users["rita"], "environment.lock", project_id=history.project.id,
                 target="environment:demo/prod", after={"reason": HOSTILE[0]}, detail=HOSTILE[1])
    db.session.commit()
    client = signed_in(app, "vic")
    for url in ("/environments", "/audit", "/releases/demo/1.7.0/evidence", "/train"):
        html = client.get(url).get_data(as_text=True)
        for text in HOSTILE:
            assert text not in html, url
        assert "javascript:" not in html, url
    assert "&lt;img src=x onerror=alert(1)&gt;" in client.get("/releases/demo/1.7.0/evidence").get_data(as_text=True)
