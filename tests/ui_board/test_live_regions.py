"""The live regions' fragment endpoints: each page marks its regions (data-live topics, hx-get,
hx-trigger="live") and each region's GET answers just that region, with the page's auth, and
what it shows agrees with the page after a change. The browser side is
tests/browser/test_live_pages.py."""

from __future__ import annotations

import re

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import Deployment, Job
from relapp.services import releases as svc
from relapp.services.projects import get_project
from tests.conftest import work_queue

from .conftest import HOSTILE, signed_in, token

HX = {"HX-Request": "true"}


def regions(html: str) -> dict[str, tuple[str, str]]:
    """id -> (topics, hx-get) of every live region in a page."""
    found = {}
    for tag in re.findall(r"<[a-z]+ [^>]*data-live=[^>]*>", html):
        attrs = dict(re.findall(r'([a-z-]+)="([^"]*)"', tag))
        assert attrs.get("hx-trigger", "").split(", ")[0] == "live", tag
        found[attrs["id"]] = (attrs["data-live"], attrs["hx-get"].replace("&amp;", "&"))
    return found


def test_pages_mark_their_live_regions_and_poll_nothing(app, released):
    client = signed_in(app, "vic")
    project = get_project("demo")
    release = svc.get_release(project, "1.3.0")
    board = client.get("/").get_data(as_text=True)
    assert regions(board) == {"board": (f"project:{project.id}", "/?project=demo")}
    assert "every " not in board and 'name="relapp-live-fallback" content="30"' in board
    assert "/static/live.js" in board and "htmx-sse" not in board
    # The page's stream starts where the doorbell stood when the page was rendered.
    assert re.search(r'name="relapp-live-after" content="\d+-\d+"', board)
    envs = client.get("/environments").get_data(as_text=True)
    assert regions(envs) == {"environments": (f"project:{project.id}", "/environments?project=demo")}
    page = client.get("/releases/demo/1.3.0?since=1.1.0").get_data(as_text=True)
    topics = f"project:{project.id} release:{release.id}"
    assert regions(page) == {
        "release-state": (topics, "/releases/demo/1.3.0/regions/state?since=1.1.0"),
        "release-side": (topics, "/releases/demo/1.3.0/regions/side")}
    job = db.session.scalar(select(Job).where(Job.release_id == release.id))
    facts = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert regions(facts) == {"job-facts": (f"job:{job.id}", f"/jobs/{job.id}/facts")}
    # Signed out, no page loads the live script.
    login = app.test_client().get("/login").get_data(as_text=True)
    assert "live.js" not in login and "relapp-live-fallback" not in login


def test_region_fragments_are_just_the_region_and_follow_changes(app, released):
    engineer = signed_in(app, "erin")
    before = engineer.get("/releases/demo/1.3.0/regions/side", headers=HX).get_data(as_text=True)
    assert before.lstrip().startswith('<aside class="release-side" id="release-side"')
    assert "Not deployed anywhere yet." in before and "<html" not in before and 'id="changelog"' not in before
    engineer.post("/releases/demo/1.3.0/deployments", headers={**HX, "X-CSRFToken": token(engineer)},
                  data={"env": "qa"})
    work_queue()
    qa = signed_in(app, "quinn")
    said = qa.post("/releases/demo/1.3.0/decisions", headers={**HX, "X-CSRFToken": token(qa)},
                   data={"env": "qa", "decision": "no-go", "comment": HOSTILE[0], "bugs": "PAY-7"})
    assert said.status_code == 200
    deployment = db.session.scalar(select(Deployment))
    side = engineer.get("/releases/demo/1.3.0/regions/side").get_data(as_text=True)
    assert f'id="deployment-{deployment.id}"' in side and '<span class="badge succeeded">succeeded</span>' in side
    assert '<span class="badge no-go">no-go</span> in <strong>qa</strong>' in side
    assert "&lt;img src=x onerror=alert(1)&gt;" in side and HOSTILE[0] not in side
    assert 'href="https://jira.example.com/browse/PAY-7"' in side
    state = engineer.get("/releases/demo/1.3.0/regions/state?since=1.1.0").get_data(as_text=True)
    assert state.lstrip().startswith('<div id="release-state"') and "<html" not in state
    assert "Runs in</dt><dd>qa" in state and "since=1.1.0" in state
    assert 'href="https://jira.example.com/browse/PAY-7"' in state
    facts = engineer.get(f"/jobs/{deployment.job_id}/facts").get_data(as_text=True)
    assert facts.lstrip().startswith('<div id="job-facts"') and 'id="job-status">succeeded<' in facts
    assert 'id="deployment-status">succeeded<' in facts and "joblog" not in facts
    board = engineer.get("/?project=demo", headers={**HX, "HX-Target": "board"}).get_data(as_text=True)
    assert board.lstrip().startswith('<div id="board"') and "<html" not in board
    envs = engineer.get("/environments?project=demo",
                        headers={**HX, "HX-Target": "environments"}).get_data(as_text=True)
    assert envs.lstrip().startswith("<section id=\"environments\"") and "1.3.0" in envs


def test_region_fragments_need_what_their_page_needs(app, released):
    anonymous = app.test_client()
    job = db.session.scalar(select(Job))
    for path in ("/releases/demo/1.3.0/regions/state", "/releases/demo/1.3.0/regions/side",
                 f"/jobs/{job.id}/facts"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    client = signed_in(app, "vic")
    missing = client.get("/releases/demo/1.3.0/regions/changelog")
    assert missing.status_code == 404 and "there are state and side" in missing.get_data(as_text=True)
    assert client.get("/releases/demo/9.9.9/regions/side").status_code == 404
    # The page answers a bad or unknown ?since= by its field; its live region, which re-fetches
    # with the page's query, keeps rendering the release instead of failing every refresh.
    for since in ("banana", "9.9.9"):
        region = client.get(f"/releases/demo/1.3.0/regions/state?since={since}")
        assert region.status_code == 200 and 'id="release-state"' in region.get_data(as_text=True)
    assert client.get("/jobs/999999/facts").status_code == 404
    assert client.post("/releases/demo/1.3.0/regions/side").status_code in (400, 405)


def test_a_page_renders_when_redis_cannot_say_where_its_stream_starts(app, released):
    from redis import Redis

    from relapp.services import live_regions
    from tests.conftest import free_port

    client = signed_in(app, "vic")
    app.extensions[live_regions._QUICK] = Redis(host="127.0.0.1", port=free_port(),
                                                socket_connect_timeout=0.25)
    try:
        response = client.get("/")
    finally:
        app.extensions.pop(live_regions._QUICK)
    html = response.get_data(as_text=True)
    # The stream then starts from its own newest id; the page is whole.
    assert response.status_code == 200 and 'name="relapp-live-after" content=""' in html
    assert 'id="board"' in html
