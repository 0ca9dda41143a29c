"""Exact changelogs on a real repository: every commit of `git rev-list PREV..THIS` is an entry, a
merge or cancelled, and the service, the API (JSON and Markdown), the release page and its two
downloads all say the same, with PR numbers linked through the project's pr_url_template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from relapp.domain import changelog as cl
from relapp.extensions import db
from relapp.models import Project, Release
from relapp.services import releases as svc
from relapp.services.accounts import create_token, create_user
from relapp.services.projects import sync_settings
from relapp.settings import parse
from tests.conftest import git, signed_in

PR_TEMPLATE = "https://code.example/org/shop/pull/{pr}"

CONFIG = """
[[projects]]
key = "shop"
name = "Shop"
remote = "{remote}"
tag_template = "v{{version}}"
issue_key_pattern = "PAY-[0-9]+"
issue_url_template = "https://tracker.example/browse/{{key}}"

[[projects.environments]]
name = "qa"

[[projects.teams]]
name = "api"
paths = ["api/"]

[[projects.teams]]
name = "web"
paths = ["web/"]
"""


@dataclass
class Shop:
    """The repository's bare remote and working clone, its commits by name, an API token."""

    origin: Path
    work: Path
    sha: dict[str, str]
    token: str

    def count(self, range_: str) -> int:
        return int(git("rev-list", "--count", range_, cwd=self.origin))

    def shas(self, range_: str) -> set[str]:
        return set(git("rev-list", range_, cwd=self.origin).split())

    def names(self, shas: Any) -> set[str]:
        by_sha = {v: k for k, v in self.sha.items()}
        return {by_sha[s] for s in shas}


def _commit(work: Path, message: str, path: str | None = None) -> str:
    if path is None:
        git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
    else:
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{target.read_text() if target.exists() else ''}{message}\n")
        git("add", path, cwd=work)
        git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def _build(work: Path) -> dict[str, str]:
    """Three releases; v1.0.0..v1.1.0 holds merges (a three-commit topic, an octopus), a revert
    pair, a revert of a commit from before v1.0.0, a topic merge reverted with `git revert -m 1`
    and an empty commit; v1.1.0..v1.2.0 reverts a commit of the range before it."""
    s: dict[str, str] = {}

    def on(branch: str) -> None:
        git("checkout", "-q", branch, cwd=work)

    def head() -> str:
        return git("rev-parse", "HEAD", cwd=work)

    s["old"] = _commit(work, "feat: old thing", "old.txt")
    s["init"] = _commit(work, "chore: initial layout", "README")
    git("tag", "v1.0.0", cwd=work)
    s["a"] = _commit(work, "feat(api): add search (#11)", "api/search.py")
    git("checkout", "-q", "-b", "topic", cwd=work)
    s["t1"] = _commit(work, "feat(web): search box", "web/box.ts")
    s["t2"] = _commit(work, "fix(web): box focus PAY-3", "web/box.ts")
    s["t3"] = _commit(work, "docs: box help <b>now</b>", "web/help.md")
    on("main")
    s["x"] = _commit(work, "fix(api): timeout", "api/t.py")
    git("merge", "-q", "--no-ff", "-m", "Merge pull request #21 from org/topic", "topic", cwd=work)
    s["m1"] = head()
    s["b"] = _commit(work, "feat(api): risky cache", "api/cache.py")
    git("revert", "--no-edit", s["b"], cwd=work)
    s["rb"] = head()
    git("revert", "--no-edit", s["old"], cwd=work)
    s["ro"] = head()
    git("checkout", "-q", "-b", "bad", cwd=work)
    s["u1"] = _commit(work, "feat(web): broken widget", "web/w.ts")
    s["u2"] = _commit(work, "fix(web): widget again", "web/w.ts")
    on("main")
    s["y"] = _commit(work, "chore: bump", "README")
    git("merge", "-q", "--no-ff", "-m", "Merge branch 'bad'", "bad", cwd=work)
    s["m2"] = head()
    git("revert", "--no-edit", "-m", "1", s["m2"], cwd=work)
    s["r2"] = head()
    for branch, name, message, path in (("o1", "s1", "fix(api): small one (#22)", "api/s1.py"),
                                        ("o2", "s2", "fix(web): small two", "web/s2.ts")):
        git("checkout", "-q", "-b", branch, "main", cwd=work)
        s[name] = _commit(work, message, path)
    on("main")
    git("merge", "-q", "--no-ff", "-m", "Merge branches 'o1' and 'o2'", "o1", "o2", cwd=work)
    s["m3"] = head()
    s["e"] = _commit(work, "chore: empty marker")
    s["c"] = _commit(work, "fix(api): last one (#30)", "api/last.py")
    git("tag", "v1.1.0", cwd=work)
    git("revert", "--no-edit", s["c"], cwd=work)
    s["rc"] = head()
    s["d"] = _commit(work, "feat(web): dark mode", "web/dark.css")
    git("tag", "v1.2.0", cwd=work)
    return s


@pytest.fixture(scope="module")
def shop_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """The repository, built once per module: the tests only read it (the app clones it)."""
    root = tmp_path_factory.mktemp("shop")
    origin, work = root / "origin.git", root / "work"
    git("init", "-q", "--bare", "-b", "main", str(origin))
    git("init", "-q", "-b", "main", str(work))
    sha = _build(work)
    git("push", "-q", str(origin), "main", "--tags", cwd=work)
    return origin, work, sha


@pytest.fixture
def shop(app: Any, shop_repo: tuple[Path, Path, dict[str, str]]) -> Shop:
    """The repository's project synced, v1.0.0–v1.2.0 recorded as releases following each
    other, a viewer with a token, and PR links configured."""
    origin, work, sha = shop_repo
    sync_settings(parse(CONFIG.format(remote=origin)))
    project = db.session.scalar(select(Project).where(Project.key == "shop"))
    # Set on the row, so the test does not depend on how the TOML spells it.
    project.pr_url_template = PR_TEMPLATE
    previous = None
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        major, minor, patch = (int(p) for p in version.split("."))
        release = Release(project_id=project.id, version=version, major=major, minor=minor,
                          patch=patch, kind="minor", source="adopted", tag=f"v{version}",
                          sha=git("rev-parse", f"v{version}^{{commit}}", cwd=origin), state="tagged",
                          follows_id=previous.id if previous else None)
        db.session.add(release)
        db.session.flush()
        previous = release
    db.session.commit()
    create_user("vic", "pass", "viewer", display_name="Vic")
    return Shop(origin=origin, work=work, sha=sha, token=create_token("vic")[1])


def _api(app: Any, shop: Shop, path: str) -> Any:
    response = app.test_client().get(f"/api/v1/projects/shop/{path}",
                                      headers={"Authorization": f"Bearer {shop.token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def _service(version: str, since: str | None = None) -> cl.Changelog:
    project = db.session.scalar(select(Project).where(Project.key == "shop"))
    return svc.changelog(project, svc.get_release(project, version), since=since)[0]


def _parts(data: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    return ({e["sha"] for e in data["entries"]}, {m["sha"] for m in data["merges"]},
            {c["sha"] for c in data["cancelled"]})


def test_every_commit_of_the_range_is_an_entry_a_merge_or_cancelled(app, shop):
    assert shop.count("v1.0.0..v1.1.0") == 19
    log = _service("1.1.0")
    assert log.commit_count == shop.count("v1.0.0..v1.1.0")
    assert len(log.entries) + len(log.merges) + len(log.cancelled) == log.commit_count
    named = [e.sha for e in log.entries] + [m.sha for m in log.merges] + list(log.cancelled_reverts)
    assert sorted(named) == sorted(shop.shas("v1.0.0..v1.1.0"))
    assert shop.names(e.sha for e in log.entries) == {
        "a", "t1", "t2", "t3", "x", "ro", "y", "s1", "s2", "e", "c"}
    assert shop.names(m.sha for m in log.merges) == {"m1", "m3"}  # the octopus is one merge
    assert shop.names(log.cancelled_reverts) == {"b", "rb", "m2", "r2", "u1", "u2"}
    # The revert of a commit from before the range stays, as a revert.
    ro = next(e for e in log.entries if e.sha == shop.sha["ro"])
    assert ro.section == cl.Section.REVERTS
    # Who reverted what, and what the merge reverted with -m 1 had brought in.
    cancelled = {shop.names([c.sha]).pop(): c for c in log.cancelled}
    assert cancelled["rb"].reverts == shop.sha["b"] and cancelled["b"].reverted_by == (shop.sha["rb"],)
    assert cancelled["r2"].reverts == shop.sha["m2"] and cancelled["m2"].merge
    assert cancelled["u1"].merged_by == cancelled["u2"].merged_by == shop.sha["m2"]
    pairs = {(shop.names([p.reverted.sha]).pop(), p.revert and shop.names([p.revert.sha]).pop(),
              tuple(sorted(shop.names(c.sha for c in p.brought_in)))) for p in log.revert_pairs}
    assert pairs == {("b", "rb", ()), ("m2", "r2", ("u1", "u2"))}

    # The next range: a revert of a commit of the range before it is an entry there; over both
    # ranges the pair cancels.
    later = _service("1.2.0")
    assert later.commit_count == shop.count("v1.1.0..v1.2.0") == 2
    assert shop.names(e.sha for e in later.entries) == {"rc", "d"}
    wide = _service("1.2.0", since="1.0.0")
    assert wide.commit_count == shop.count("v1.0.0..v1.2.0") == 21
    assert len(wide.entries) + len(wide.merges) + len(wide.cancelled) == wide.commit_count
    assert shop.names(wide.cancelled_reverts) == {"b", "rb", "m2", "r2", "u1", "u2", "c", "rc"}


def test_api_page_markdown_and_downloads_agree_and_link_prs(app, shop):
    count = shop.count("v1.0.0..v1.1.0")
    log = _service("1.1.0")
    data = _api(app, shop, "releases/1.1.0/changelog").get_json()
    assert data["commit_count"] == count and data["merge_count"] == 2
    assert _parts(data) == ({e.sha for e in log.entries}, {m.sha for m in log.merges},
                            set(log.cancelled_reverts))
    r2 = next(c for c in data["cancelled"] if c["sha"] == shop.sha["r2"])
    assert r2["reverts"] == shop.sha["m2"] and r2["subject"] == "Revert \"Merge branch 'bad'\""
    link = {e["sha"]: e.get("pr_url") for e in data["entries"] + data["merges"]}
    assert link[shop.sha["a"]] == "https://code.example/org/shop/pull/11"
    assert link[shop.sha["m1"]] == "https://code.example/org/shop/pull/21"
    assert link[shop.sha["t1"]] is None

    client = signed_in(app, "vic")
    download = json.loads(client.get("/releases/shop/1.1.0/changelog.json").get_data(as_text=True))
    assert download["project"] == "shop"
    assert ({k: v for k, v in download.items() if k not in ("project", "version", "since")}
            == {k: v for k, v in data.items() if k not in ("version", "since")})

    markdown = _api(app, shop, "releases/1.1.0/changelog?format=markdown").get_data(as_text=True)
    assert client.get("/releases/shop/1.1.0/changelog.md").get_data(as_text=True) == markdown
    lines = markdown.splitlines()
    assert lines[2] == f"_{count} commits: 11 entries, 2 merges, 6 cancelled._"
    for sha in shop.shas("v1.0.0..v1.1.0"):
        assert f"`{sha[:7]}`" in markdown
    assert "## Merges" in lines and "## Cancelled (reverted within this release)" in lines
    assert f"`{shop.sha['a'][:7]}`, [#11](https://code.example/org/shop/pull/11)" in markdown
    assert "[#21](https://code.example/org/shop/pull/21)" in markdown
    assert (f"- feat(api): risky cache (`{shop.sha['b'][:7]}`) reverted by "
            f"Revert \"feat(api): risky cache\" (`{shop.sha['rb'][:7]}`)") in lines
    assert f"  - feat(web): broken widget (`{shop.sha['u1'][:7]}`)" in lines
    assert "box help \\<b\\>now\\</b\\>" in markdown

    html = client.get("/releases/shop/1.1.0").get_data(as_text=True)
    assert f"{count} commits since 1.0.0" in html
    assert f"{count} commits: 11 entries, 2 merges, 6 cancelled." in html
    for sha in shop.shas("v1.0.0..v1.1.0"):
        assert f'title="{sha}"' in html
    merges = re.search(r'<details class="cl-merges">(.*?)</details>', html, re.DOTALL)
    assert merges is not None and "<summary>2 merges</summary>" in merges.group(1)
    assert merges.group(1).count("<li>") == 2 and "Merge branches &#39;o1&#39; and &#39;o2&#39;" in merges.group(1)
    cancelled = html.split('<section class="cl-cancelled">')[1].split("</section>")[0]
    assert cancelled.count("<s>") == 6 and "Revert &#34;Merge branch &#39;bad&#39;&#34;" in cancelled
    assert "box help &lt;b&gt;now&lt;/b&gt;" in html and "<b>now</b>" not in html
    for pr in (11, 21, 22, 30):
        assert f'href="{cl.pr_url(PR_TEMPLATE, pr)}"' in html
    assert 'href="https://tracker.example/browse/PAY-3"' in html


def test_without_a_pr_template_pr_numbers_are_text(app, shop):
    project = db.session.scalar(select(Project).where(Project.key == "shop"))
    project.pr_url_template = ""
    db.session.commit()
    data = _api(app, shop, "releases/1.1.0/changelog").get_json()
    assert all("pr_url" not in e for e in data["entries"] + data["merges"])
    markdown = _api(app, shop, "releases/1.1.0/changelog?format=markdown").get_data(as_text=True)
    assert f"(`{shop.sha['a'][:7]}`, #11)" in markdown and "code.example" not in markdown
    html = signed_in(app, "vic").get("/releases/shop/1.1.0").get_data(as_text=True)
    assert "· #11" in html and "code.example" not in html
    # ?since= over two ranges: the same count as git, through the API too.
    wide = _api(app, shop, "releases/1.2.0/changelog?since=1.0.0").get_json()
    assert wide["commit_count"] == shop.count("v1.0.0..v1.2.0")
    assert sum(len(part) for part in _parts(wide)) == wide["commit_count"]
