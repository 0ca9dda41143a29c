"""Live pages in Debian's Chromium against `python -m relapp.run` with the polling fallback off
(RELAPP_LIVE_FALLBACK_SECONDS=0): whatever a page shows without a reload came through its /events
doorbell. A change made in another tab, by another user or by a worker process appears on the
board, the release page, the environments page and the job page; a half-typed field and the
focus survive an update; a hidden tab holds no stream and catches up when shown.

No step waits for a time: each waits for what the page shows (or for a request to start or end).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import run_server
from tests.processes import tree_of

# One server for the module: its tests share a worker under `make test`'s --dist loadgroup.
pytestmark = pytest.mark.xdist_group("browser-live-pages")

WAIT_MS = 60_000
CARD = "#board .card[data-version='{v}']"
# Page Visibility, emulated: headless Chromium shows every tab, so a test says which are hidden.
VISIBILITY = """
window.__visible = (shown) => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => shown ? "visible" : "hidden"});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => !shown});
  document.dispatchEvent(new Event("visibilitychange"));
};
"""
TICKS = "new Promise((done) => setTimeout(() => setTimeout(done, 0), 0))"


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`python -m relapp.run` as the shared live_server starts it, with the polling fallback
    switched off: a page can only learn of a change through /events."""
    with run_server(tmp_path_factory.mktemp("live-instance"),
                    RELAPP_LIVE_FALLBACK_SECONDS="0") as server:
        yield server


@pytest.fixture
def pages(browser: Any, quiet_server: dict[str, Any]) -> Iterator[Any]:
    """Signed-in pages, one browser context (one person) each: `pages(username, path="/")`."""
    contexts = []

    def make(username: str, path: str = "/") -> Any:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script(VISIBILITY)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(quiet_server["url"] + "/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(quiet_server["url"] + "/")
        if path != "/":
            page.goto(quiet_server["url"] + path)
        return page

    yield make
    for context in contexts:
        context.close()


def listening(page: Any) -> Any:
    """Wait until the page's /events stream is open, and mark the document: a reload loses the mark."""
    expect(page.locator("html[data-live=open]")).to_have_count(1, timeout=WAIT_MS)
    page.evaluate("window.__same = true")
    return page


def same_document(page: Any) -> bool:
    return bool(page.evaluate("window.__same === true"))


def deploy_worker(server: dict[str, Any]) -> list[int]:
    """The process of `worker.py --queues deploy` that relapp.run supervises."""
    found = []
    for pid in tree_of(server["proc"].pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"worker.py") for arg in argv) and b"deploy" in argv:
            found.append(pid)
    assert len(found) == 1, found
    return found


@contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """Hold processes still (SIGSTOP) for the block: a deploy stays queued until it ends."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


class Streams:
    """The stream requests (URLs containing `part`) of a page or a whole browser context: those
    started, those still open, and the most open at once."""

    def __init__(self, where: Any, part: str) -> None:
        self.part = part
        self.started: list[str] = []
        self.open: set[Any] = set()
        self.most = 0
        where.on("request", self._start)
        where.on("requestfinished", self._end)
        where.on("requestfailed", self._end)

    def _start(self, request: Any) -> None:
        if self.part in request.url:
            self.started.append(request.url)
            self.open.add(request)
            self.most = max(self.most, len(self.open))

    def _end(self, request: Any) -> None:
        self.open.discard(request)


def wait_count(what: str, check: Any, page: Any) -> None:
    """Wait (through the page's own event loop) until `check()` holds."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        page.wait_for_timeout(50)  # lets Playwright deliver the context's request events


def test_board_release_page_and_job_facts_follow_changes_made_elsewhere(pages, quiet_server):
    engineer = pages("engineer")
    viewer = listening(pages("viewer"))

    # The board: engineer cuts 1.3.0; the viewer's board shows it, then tagged by the git worker.
    engineer.click("#cut-button")
    engineer.locator("#panel").get_by_role("button", name="Cut 1.3.0").click()
    expect(viewer.locator(CARD.format(v="1.3.0"))).to_have_class(
        re.compile(r"\brelease-state-tagged\b"), timeout=WAIT_MS)
    assert same_document(viewer)

    # The release page: a deploy asked for by engineer, run by the deploy worker.
    viewer.goto(quiet_server["url"] + "/releases/demo/1.3.0")
    listening(viewer)
    expect(viewer.locator("#deployments")).to_contain_text("Not deployed anywhere yet.")
    with paused(deploy_worker(quiet_server)):
        engineer.locator(CARD.format(v="1.3.0")).get_by_role("button", name="Deploy to qa").click()
        engineer.locator("#panel").get_by_role("button", name="1.3.0 to qa").click()
        link = engineer.locator("#panel a", has_text="Follow the log")
        job_url = quiet_server["url"] + link.get_attribute("href")
        expect(viewer.locator("#deployments .badge.queued")).to_have_count(1, timeout=WAIT_MS)

        # The job page, with its own log stream cut off: only /events can change its facts.
        facts = viewer.context.new_page()
        facts.route("**/jobs/*/stream*", lambda route: route.abort())
        facts.goto(job_url)
        listening(facts)
        expect(facts.locator("#job-status")).to_have_text("queued")
        expect(facts.locator("#job-facts")).to_contain_text(re.compile(r"Started\s*—"))

        # A hidden job page closes its log stream and resumes after its last line when shown.
        follower = viewer.context.new_page()
        logs = Streams(follower, "/stream")
        follower.goto(job_url)
        wait_count("the job log stream", lambda: len(logs.open) == 1, follower)
        follower.evaluate("window.__visible(false)")
        wait_count("the job log stream to close", lambda: not logs.open, follower)
        expect(follower.locator("html[data-live=hidden]")).to_have_count(1)
        follower.evaluate("window.__visible(true)")
        wait_count("the job log stream again", lambda: len(logs.open) == 1, follower)
        assert len(logs.started) == 2 and all("after=0" in url for url in logs.started)

    # The worker goes on: the deploy runs and succeeds, and every page says so by itself.
    expect(viewer.locator("#deployments .badge.succeeded")).to_have_count(1, timeout=WAIT_MS)
    expect(viewer.locator("#release-state")).to_contain_text(re.compile(r"Runs in\s*qa"), timeout=WAIT_MS)
    expect(facts.locator("#job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(facts.locator("#job-facts")).to_contain_text(re.compile(r"Started\s*\d{4}-\d\d-\d\d"))
    expect(engineer.locator("#column-qa .card[data-version='1.3.0']")).to_have_count(1, timeout=WAIT_MS)
    assert same_document(viewer) and same_document(facts)


def test_the_environments_page_keeps_a_half_typed_field_and_the_focus(pages):
    admin = pages("admin", "/environments")
    typing = listening(pages("release", "/environments"))
    typing.evaluate("""window.__asked = [];
      document.body.addEventListener("htmx:beforeRequest", (e) => window.__asked.push(e.detail.elt.id));""")

    # release opens qa's lock form and types half a reason; the field keeps the focus.
    typing.locator("#env-qa summary").click()
    reason = typing.locator("#env-qa form[action$='/lock'] input[name=reason]")
    reason.press_sequentially("Smoke tests are fla")

    # Meanwhile admin locks prod.
    admin.locator("#env-prod summary").click()
    admin.locator("#env-prod form[action$='/lock'] input[name=reason]").fill("Audit week")
    admin.locator("#env-prod").get_by_role("button", name="Lock", exact=True).click()
    expect(admin.locator("#env-prod")).to_contain_text("Locked: Audit week")

    # The change reached release's page, which kept still: the grid is marked stale, not swapped.
    expect(typing.locator("#environments[data-live-stale]")).to_have_count(1, timeout=WAIT_MS)
    assert reason.input_value() == "Smoke tests are fla"
    assert typing.evaluate("document.activeElement.matches(\"#env-qa input[name=reason]\")")
    assert "Locked: Audit week" not in typing.locator("#env-prod").inner_text()
    assert "environments" not in typing.evaluate("window.__asked")

    # Focus leaves, the text stays: still kept (the refresh is asked for and refused at once).
    typing.locator("h1").click()
    typing.evaluate(TICKS)
    assert typing.locator("#environments[data-live-stale]").count() == 1
    assert "environments" not in typing.evaluate("window.__asked")
    assert reason.input_value() == "Smoke tests are fla"

    # The field emptied and left: the grid catches up, and qa's form stays open.
    reason.fill("")
    typing.locator("h1").click()
    expect(typing.locator("#env-prod")).to_contain_text("Locked: Audit week", timeout=WAIT_MS)
    expect(typing.locator("#environments[data-live-stale]")).to_have_count(0)
    expect(typing.locator("#env-qa details[open]")).to_have_count(1)
    assert same_document(typing)

    admin.locator("#env-prod summary").click()
    admin.locator("#env-prod").get_by_role("button", name="Unlock prod").click()
    expect(typing.locator("#env-prod")).not_to_contain_text("Locked: Audit week", timeout=WAIT_MS)


def test_hidden_tabs_hold_no_stream_and_catch_up_when_shown(pages, quiet_server):
    admin = pages("admin", "/environments")
    first = pages("viewer")
    context = first.context
    context.add_init_script("window.__visible(false)")  # every tab opened from now on is hidden
    streams = Streams(context, "/events")
    tabs = []
    for _ in range(10):
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        tab.goto(quiet_server["url"] + "/environments")
        expect(tab.locator("html[data-live=hidden]")).to_have_count(1)
        tabs.append(tab)
    first.close()
    assert streams.started == []  # ten hidden tabs, no stream

    shown = tabs[0]
    shown.evaluate("window.__visible(true)")
    listening(shown)
    wait_count("one open stream", lambda: len(streams.open) == 1, shown)
    shown.evaluate("window.__visible(false)")
    wait_count("the stream to close", lambda: not streams.open, shown)

    # A change while every tab is hidden: the shown tab catches up from its last id.
    admin.locator("#env-beta summary").click()
    admin.locator("#env-beta form[action$='/freeze'] input[name=reason]").fill("Quarter end")
    admin.locator("#env-beta").get_by_role("button", name="Freeze", exact=True).click()
    expect(admin.locator("#env-beta")).to_contain_text("Frozen: Quarter end")
    assert "Frozen: Quarter end" not in shown.locator("#env-beta").inner_text()
    shown.evaluate("window.__visible(true)")
    expect(shown.locator("#env-beta")).to_contain_text("Frozen: Quarter end", timeout=WAIT_MS)
    assert len(streams.started) == 2 and "after=" in streams.started[1]
    assert streams.most == 1
    assert same_document(shown)
