"""The train page and the release page cost what they show, not what history holds: the same
statements with 200 more old releases, a train that reads only its window, a bounded "Compare
with" that takes any typed version, and a changelog collapsed by team with the whole text one
click or one export away."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy import insert, select

from relapp.extensions import db
from relapp.models import Deployment, Release
from relapp.services import releases as rel
from relapp.services import train_report
from relapp.services.projects import get_project
from tests.conftest import git
from tests.query_count import counting

from .conftest import NOW, signed_in


def add_old_releases(history, count, *, first=1, days_ago=400, deployed=True):
    """`count` old cut releases 0.0.<n> (tagged, deployed to every environment long ago), in bulk."""
    project = history.project
    sha = git("rev-list", "--max-parents=0", "main", cwd=history.demo.origin).split()[0]
    rows = [{"project_id": project.id, "version": f"0.0.{n}", "major": 0, "minor": 0, "patch": n,
             "kind": "minor", "source": "cut", "tag": f"v0.0.{n}", "sha": sha, "state": "tagged",
             "details": {}, "created_at": NOW - timedelta(days=days_ago + first + count - n)}
            for n in range(first, first + count)]
    db.session.execute(insert(Release), rows)
    if deployed:
        ids = db.session.scalars(select(Release.id).where(
            Release.project_id == project.id, Release.major == 0, Release.minor == 0,
            Release.patch.between(first, first + count - 1))).all()
        db.session.execute(insert(Deployment), [
            {"release_id": rid, "environment_id": env.id, "status": "succeeded",
             "created_at": NOW - timedelta(days=days_ago), "finished_at": NOW - timedelta(days=days_ago),
             "attempt": 0}
            for rid in ids for env in project.environments])
    db.session.commit()


def snapshot(report):
    return ([(t.release.version, t.lead_seconds, t.superseded, t.hotfixes, [(s.stage, s.seconds, s.open) for s in t.stages])
             for t in report.releases],
            [(g.version, g.days) for g in report.gaps], report.median_lead_days, report.median_gap_days,
            report.within_week, report.reached_last, [(w.week, w.counts) for w in report.weeks])


# --- the train -----------------------------------------------------------------------------

def test_the_train_reads_only_its_window_of_releases(history):
    # 30 older cuts fill the window (the 6 seeded ones and the newest 14 of them).
    add_old_releases(history, 30, first=201, days_ago=100)
    db.session.expire_all()
    with counting() as before_sql:
        before = train_report.train_report(history.project, now=NOW)
    assert len(before.releases) == 20 and before.releases[-1].release.version == "1.7.0"
    assert before.releases[0].release.version == "0.0.217"
    # 200 releases older than the window change nothing it shows, and no statement is added.
    add_old_releases(history, 200, first=1, days_ago=200)
    db.session.expire_all()
    with counting() as after_sql:
        after = train_report.train_report(history.project, now=NOW)
    assert snapshot(after) == snapshot(before)
    assert len(after_sql) == len(before_sql)


def test_the_train_page_runs_the_same_statements_at_any_history(app, history):
    add_old_releases(history, 30, first=201, days_ago=100)  # the window is full
    client = signed_in(app, "vic")
    client.get("/train")  # warm-up: the session's first request reads its user
    with counting() as small:
        html = client.get("/train").get_data(as_text=True)
    add_old_releases(history, 200, first=1, days_ago=200)
    with counting() as large:
        large_html = client.get("/train").get_data(as_text=True)
    assert len(large) == len(small)
    assert 'id="train-window"' in html and "The newest 20 releases cut" in html
    # Releases older than the window never reach the page.
    plotted = {int(n) for n in re.findall(r">0\.0\.(\d+)<", large_html)}
    assert plotted and min(plotted) >= 217 and "1.7.0" in large_html
    assert abs(len(large_html) - len(html)) < 200


def test_the_train_window_of_weeks_is_chosen_from_a_fixed_list(app, history):
    client = signed_in(app, "vic")
    assert 'value="26" selected' in client.get("/train?weeks=26").get_data(as_text=True)
    for bad in ("abc", "9999", "-1"):
        response = client.get(f"/train?weeks={bad}")
        assert response.status_code == 200 and 'value="12" selected' in response.get_data(as_text=True)


def test_a_release_overtaken_is_superseded_by_any_higher_version_in_the_window(history):
    # A 1.4.2 hotfix cut now waits for qa, which 1.5.0 (higher) entered long ago: no open clock.
    project = history.project
    release = Release(project_id=project.id, version="1.4.2", major=1, minor=4, patch=2, kind="hotfix",
                      source="cut", tag="v1.4.2", sha=history.releases["1.4.1"].sha, state="tagged",
                      created_at=NOW - timedelta(hours=1))
    db.session.add(release)
    db.session.commit()
    timings = {t.release.version: t for t in train_report.train_report(project, now=NOW).releases}
    assert timings["1.4.2"].superseded is True and not any(s.open for s in timings["1.4.2"].stages)
    assert timings["1.7.0"].superseded is False and timings["1.7.0"].stages[-1].open


# --- the release page ----------------------------------------------------------------------

def options(html):
    return re.findall(r'<option value="([^"]+)"></option>', html.split('id="since-choices"')[1].split("</datalist>")[0])


def test_the_release_page_runs_the_same_statements_and_weighs_the_same_at_any_history(app, history):
    client = signed_in(app, "vic")
    client.get("/releases/demo/1.5.0")
    with counting() as small:
        html = client.get("/releases/demo/1.5.0").get_data(as_text=True)
    add_old_releases(history, 200)
    with counting() as large:
        large_html = client.get("/releases/demo/1.5.0").get_data(as_text=True)
    assert len(large) == len(small)
    assert len(large_html) < len(html) + 1500
    choices = options(large_html)
    assert len(choices) <= 20
    # The nearest versions of its line and the newest ones are offered, newest first.
    assert choices[:4] == ["1.7.0", "1.6.0", "1.4.1", "1.4.0"]
    assert "0.0.200" in choices and "0.0.1" not in choices


def test_compare_with_takes_any_typed_version_and_says_why_not(app, history):
    add_old_releases(history, 200)
    client = signed_in(app, "vic")
    far = client.get("/releases/demo/1.5.0?since=0.0.1")
    assert far.status_code == 200
    html = far.get_data(as_text=True)
    assert "since 0.0.1" in html and 'value="0.0.1"' in html and "0.0.1" not in options(html)
    for typed, status, sentence in (("banana", 400, "&#39;banana&#39; is not a version like 1.4.0."),
                                    ("7.7.7", 404, "Project demo has no release 7.7.7."),
                                    ("<b>x</b>", 400, "&#39;&lt;b&gt;x&lt;/b&gt;&#39; is not a version")):
        response = client.get("/releases/demo/1.5.0", query_string={"since": typed})
        body = response.get_data(as_text=True)
        assert response.status_code == status, typed
        assert 'id="since-error"' in body and sentence in body, typed
        # The page still shows the changelog since the release it follows.
        assert "since 1.4.0" in body


def teams_shown(html):
    return re.findall(r'<section class="cl-team" id="(cl-team-\d+)" data-team="([^"]+)">(.*?)</section>', html, re.DOTALL)


def test_a_long_changelog_is_collapsed_by_team_and_whole_in_show_all_and_the_exports(app, history):
    add_old_releases(history, 5, deployed=False)
    log, _ = rel.changelog(get_project("demo"), history.releases["1.5.0"], since="0.0.1")
    assert len(log.entries) > 100
    client = signed_in(app, "vic")
    html = client.get("/releases/demo/1.5.0?since=0.0.1").get_data(as_text=True)
    sections = teams_shown(html)
    assert [team for _id, team, _body in sections] == list(log.by_team)
    collapsed = 0
    for element_id, team, body in sections:
        total = sum(len(entries) for _s, entries in log.by_team[team])
        assert body.count("<li>") == min(total, 20), team
        if total <= 20:
            assert "show all" not in body
            continue
        collapsed += 1
        link = re.search(r'href="([^"]+)" hx-get="[^"]+" hx-target="#' + element_id + '"', body).group(1)
        assert f"show all {total} entries of {team}" in body
        url = link.replace("&amp;", "&")
        part = client.get(url, headers={"HX-Request": "true", "HX-Target": element_id})
        fragment = part.get_data(as_text=True)
        assert part.status_code == 200 and "<html" not in fragment
        assert fragment.lstrip().startswith(f'<section class="cl-team" id="{element_id}"')
        assert fragment.count("<li>") == total and "show all" not in fragment
        page = client.get(url).get_data(as_text=True)  # without htmx, a page
        assert "<html" in page and page.count("<li>") >= total
    assert collapsed >= 1
    # The exports hold every entry.
    markdown = client.get("/releases/demo/1.5.0/changelog.md?since=0.0.1").get_data(as_text=True)
    assert all(entry.short_sha in markdown for entry in log.entries)
    body = json.loads(client.get("/releases/demo/1.5.0/changelog.json?since=0.0.1").get_data(as_text=True))
    assert len(body["entries"]) == len(log.entries)


def test_show_all_of_an_unknown_team_is_a_404_sentence(app, history):
    client = signed_in(app, "vic")
    response = client.get("/releases/demo/1.5.0/changelog/team?team=nobody")
    assert response.status_code == 404 and "has no entries of a team &#39;nobody&#39;" in response.get_data(as_text=True)
    signed_out = app.test_client().get("/releases/demo/1.5.0/changelog/team?team=payments")
    assert signed_out.status_code in (302, 401)
