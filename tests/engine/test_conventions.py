"""Real repositories in conventions other than the demo's: the preview (`/next`), the cut, the
refusal to guess a baseline, and the fetch a preview answers from.

One history serves every test: product tags `product-X_Y_Z`, a two-part `product-1_2`, release
candidates of another shape (`rc-1_2_0-1`), a second product sharing the numbers (`lite-…`), a
suffixed one-off (`product-1_1_0-hotfixfoo`), a tag with no number, a hotfix on a line branch,
and a side branch with the highest tag (`product-2_0_0`) that never merged back.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import filelock
import pytest
from sqlalchemy import select

from relapp import gitops
from relapp.extensions import db
from relapp.models import AuditEvent, Release
from relapp.services import releases as svc
from relapp.services.accounts import create_token, create_user
from relapp.services.projects import get_project, sync_settings
from relapp.settings import parse
from tests.conftest import git, work_queue

PRODUCT = """
[[projects]]
key = "shop"
remote = "origin.git"
tag_template = "product-{{major}}_{{minor}}_{{patch}}"
{rules}

[[projects.environments]]
name = "qa"
"""
RULES = r"""legacy_tags = ['rc-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)-(?P<pre>\d+)']
ignore_tags = ['lite-.*', 'product-\d+_\d+_\d+-.+']"""


class History:
    """A bare remote and a working clone to build it in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.origin = gitops.init_bare(folder / "origin.git")
        self.work = folder / "work"
        git("clone", "-q", str(self.origin), str(self.work))
        git("checkout", "-q", "-b", "main", cwd=self.work)
        self.n = 0

    def commit(self, message: str, path: str = "app/x.txt") -> str:
        self.n += 1
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{self.n}\n")
        git("add", path, cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, annotated: bool = True) -> None:
        git("tag", *(["-a", "-m", name] if annotated else []), name, cwd=self.work)

    def push(self) -> None:
        git("push", "-q", "--all", "origin", cwd=self.work)
        git("push", "-q", "--tags", "origin", cwd=self.work)


def product_history(folder: Path) -> History:
    h = History(folder)
    h.commit("feat: first shop")
    h.tag("product-1_0_0")
    h.tag("nightly")  # no number: not version-like
    h.commit("feat: basket")
    h.tag("product-1_1_0")
    h.tag("lite-1_1_0")  # the second product, same numbers
    h.tag("product-1_1_0-hotfixfoo", annotated=False)  # a suffixed one-off
    git("checkout", "-q", "-b", "release/1.1", cwd=h.work)
    h.commit("fix: basket rounding")
    h.tag("product-1_1_1")
    git("checkout", "-q", "main", cwd=h.work)
    h.commit("feat: coupons")
    h.tag("rc-1_2_0-1")
    h.commit("fix: coupon expiry")
    h.tag("product-1_2")  # two parts: 1.2.0
    git("checkout", "-q", "-b", "experiment", cwd=h.work)
    h.commit("feat!: new checkout that never shipped")
    h.tag("product-2_0_0")  # the highest tag, not reachable from main
    git("checkout", "-q", "main", cwd=h.work)
    h.commit("feat(api): search")
    h.commit("fix: search paging")
    h.commit("docs: readme", path="README.md")
    h.push()
    return h


def _setup(folder: Path, rules: str) -> Any:
    sync_settings(parse(PRODUCT.format(rules=rules), base_dir=folder))
    for name, role in (("erin", "engineer"), ("ada", "admin"), ("vic", "viewer")):
        create_user(name, "pass", role, display_name=name.title())
    return {name: {"Authorization": f"Bearer {create_token(name)[1]}"} for name in ("erin", "ada", "vic")}


@pytest.fixture
def product(app_ctx: Any, tmp_path: Path) -> tuple[History, Any]:
    return product_history(tmp_path), _setup(tmp_path, RULES)


def test_an_underscore_template_previews_and_cuts_the_next_minor(app, product):
    h, headers = product
    client = app.test_client()
    head = git("rev-parse", "main", cwd=h.origin)
    previous = git("rev-parse", "product-1_2^{commit}", cwd=h.origin)
    preview = client.get("/api/v1/projects/shop/next?ref=main", headers=headers["vic"])
    assert preview.status_code == 200, preview.get_json()
    data = preview.get_json()
    assert data["version"] == "1.3.0" and data["tag"] == "product-1_3_0"
    assert data["previous"] == "1.2.0" and data["previous_tag"] == "product-1_2"
    assert data["commit"] == head and data["bump"] == "minor"
    assert data["commit_count"] == int(git("rev-list", "--count", f"{previous}..{head}", cwd=h.origin)) == 3
    assert data["why"] == "Minor: 3 commits since 1.2.0, none marked breaking."
    assert any("highest 2.0.0" in note for note in data["notes"])

    cut = client.post("/api/v1/projects/shop/releases", json={}, headers=headers["erin"])
    assert cut.status_code == 202, cut.get_json()
    assert cut.get_json()["version"] == "1.3.0" and cut.get_json()["follows"] == "1.2.0"
    work_queue()
    assert git("rev-parse", "product-1_3_0^{commit}", cwd=h.origin) == head
    release = db.session.scalar(select(Release).where(Release.version == "1.3.0"))
    assert release.state == "tagged" and release.tag == "product-1_3_0"

    # The next preview reads the tag relapp just made with the template, and nothing is new.
    svc.workspace(get_project("shop")).fetch()
    again = client.get("/api/v1/projects/shop/next", headers=headers["vic"])
    assert again.status_code == 409 and again.get_json()["type"].endswith("#nothing_new")
    assert "Nothing changed since the previous release" in again.get_json()["detail"]


def test_the_board_panel_shows_the_preview_before_the_click(app, product):
    assert product
    client = app.test_client()
    from tests.conftest import login

    assert login(client, "erin").status_code == 302
    page = client.get("/releases/shop/cut").get_data(as_text=True)
    assert 'id="cut-preview"' in page
    assert "<strong>1.3.0</strong> · tag <code>product-1_3_0</code>" in page
    assert "1.2.0 (<code>product-1_2</code>)" in page and "3 commits" in page
    assert "Minor: 3 commits since 1.2.0, none marked breaking." in page


def test_tags_relapp_cannot_read_refuse_the_cut_instead_of_starting_at_the_baseline(app, app_ctx, tmp_path):
    h = product_history(tmp_path)
    # The project's template is the default v{version}: none of the product tags is read.
    headers = _setup(tmp_path, "")
    project = get_project("shop")
    project.tag_template = "v{version}"
    db.session.commit()
    client = app.test_client()
    # Version-like tags: every tag with a digit (nightly has none): 8 of them, none read.
    sentence = "8 of 8 tags are not understood; see the adoption page."
    preview = client.get("/api/v1/projects/shop/next", headers=headers["vic"])
    body = preview.get_json()
    assert preview.status_code == 409 and preview.mimetype == "application/problem+json"
    assert body["detail"] == sentence and body["adoption_url"] == "/projects/shop/adoption"
    cut = client.post("/api/v1/projects/shop/releases", json={}, headers=headers["erin"])
    assert cut.status_code == 409 and cut.get_json()["detail"] == sentence
    assert not h.origin.joinpath("refs/tags/v0.1.0").exists()
    assert db.session.scalar(select(Release)) is None

    # Only an admin may confirm the baseline; the confirmation is audited.
    refused = client.post("/api/v1/projects/shop/releases", json={"confirm_baseline": True}, headers=headers["erin"])
    assert refused.status_code == 403
    confirmed = client.post("/api/v1/projects/shop/releases", json={"confirm_baseline": True}, headers=headers["ada"])
    assert confirmed.status_code == 202, confirmed.get_json()
    assert confirmed.get_json()["version"] == "0.1.0"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "release.baseline_confirmed"))
    assert event.actor == "ada" and event.after["tags_not_understood"] == 8

    # On the board's panel the refusal is the same sentence with a link, and no cut button.
    from tests.conftest import login

    assert login(client, "erin").status_code == 302
    page = client.get("/releases/shop/cut").get_data(as_text=True)
    assert sentence in page and 'href="/projects/shop/adoption"' in page
    assert 'action="/releases/shop"' not in page and 'name="confirm_baseline"' not in page


def test_a_repository_without_tags_starts_at_the_baseline(app, app_ctx, tmp_path):
    h = History(tmp_path)
    h.commit("feat: hello")
    h.commit("fix: typo")
    h.push()
    headers = _setup(tmp_path, "")
    data = app.test_client().get("/api/v1/projects/shop/next", headers=headers["vic"]).get_json()
    assert data["version"] == "0.1.0" and data["tag"] == "product-0_1_0" and data["previous"] is None
    assert data["commit_count"] == 2 and data["bump"] == "initial"


def test_releases_only_on_other_branches_are_not_a_reason_to_restart(app, app_ctx, tmp_path):
    h = History(tmp_path)
    h.commit("feat: hello")
    git("checkout", "-q", "-b", "release/3.4", cwd=h.work)
    h.commit("fix: only on the line")
    h.tag("product-3_4_0")
    git("checkout", "-q", "main", cwd=h.work)
    h.commit("feat: more")
    h.push()
    headers = _setup(tmp_path, "")
    answer = app.test_client().get("/api/v1/projects/shop/next", headers=headers["vic"])
    assert answer.status_code == 409
    assert answer.get_json()["detail"].startswith("No release is reachable from this commit, but 3.4.0")


def test_a_preview_answers_from_a_recent_fetch_and_never_waits_behind_another(app, product):
    assert product
    project = get_project("shop")
    calls: list[tuple[str, ...]] = []
    gitops.on_git_call.append(calls.append)
    try:
        svc.preview(project)  # first read: clones and fetches
        fetches = sum(1 for argv in calls if "fetch" in argv or "clone" in argv)
        assert fetches >= 1
        calls.clear()
        svc.preview(project)  # within 30 s: no fetch
        assert not any("fetch" in argv for argv in calls)

        ws = svc.workspace(project)
        old = time.time() - svc.FETCH_MAX_AGE - 5
        os.utime(ws.git_dir / "relapp-fetched", (old, old))
        calls.clear()
        svc.preview(project)  # older than 30 s: fetches again
        assert any("fetch" in argv for argv in calls)

        # Another request is fetching (it holds the fetch lock): the preview reads what is there.
        os.utime(ws.git_dir / "relapp-fetched", (old, old))
        lock = filelock.FileLock(str(ws.path.with_name(ws.path.name + ".fetch.lock")))
        answers: list[Any] = []
        with lock:
            reader = threading.Thread(target=lambda: answers.append(_preview_in_context(app)))
            reader.start()
            reader.join(60)  # a deadlock guard, not a timing check
            assert not reader.is_alive() and answers and answers[0] == "1.3.0"
        calls.clear()
    finally:
        gitops.on_git_call.remove(calls.append)


def _preview_in_context(app: Any) -> str:
    with app.app_context():
        return str(svc.preview(get_project("shop")).version)


def test_a_remote_that_cannot_be_reached_leaves_the_preview_on_the_last_fetch(app, product):
    h, headers = product
    client = app.test_client()
    assert client.get("/api/v1/projects/shop/next", headers=headers["vic"]).status_code == 200
    ws = svc.workspace(get_project("shop"))
    old = time.time() - svc.FETCH_MAX_AGE - 5
    os.utime(ws.git_dir / "relapp-fetched", (old, old))
    h.origin.rename(h.origin.with_name("gone.git"))
    data = client.get("/api/v1/projects/shop/next", headers=headers["vic"]).get_json()
    assert data["version"] == "1.3.0"
    assert any(note.startswith("The remote could not be reached just now") for note in data["notes"])
