"""Adoption on real repositories in other conventions: the page's shapes, proposed rules, the next
version under them, the conflicts and the TOML snippet; and adopted releases that follow each
other by reachability, from one git walk.

Conventions covered: an underscore template with a product prefix not configured yet
(`product-1_4_0`), release candidates of another shape (`rc-1_5_0-1`), a second product sharing
the numbers (`lite-1_4_0`), a suffixed one-off (`product-1_2_0-hotfixfoo`), a two-part version
(`product-1_3`), a tag with no number (`nightly`), a built-in form (`v0.9`), tags on branches
that never merged back, and a highest tag (`product-2_0_0`) not reachable from main.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from semver import Version
from sqlalchemy import select

from relapp import gitops
from relapp.domain import versioning as vs
from relapp.extensions import db
from relapp.models import AuditEvent, Release
from relapp.services import adoption, releases
from relapp.services.accounts import create_token, create_user
from relapp.services.projects import get_project, sync_settings
from relapp.settings import parse
from tests.conftest import git, signed_in

PROJECT = """
[[projects]]
key = "shop"
remote = "origin.git"
{extra}

[[projects.environments]]
name = "qa"
"""


class History:
    """A bare remote and a working clone to build its history in, one commit per call."""

    def __init__(self, folder: Path) -> None:
        self.origin = gitops.init_bare(folder / "origin.git")
        self.work = folder / "work"
        git("clone", "-q", str(self.origin), str(self.work))
        git("checkout", "-q", "-b", "main", cwd=self.work)
        self.n = 0

    def commit(self, message: str, *tags: str) -> str:
        self.n += 1
        (self.work / f"{self.n}.txt").write_text(message)  # a file each: merges never conflict
        git("add", f"{self.n}.txt", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        for name in tags:
            git("tag", "-a", "-m", name, name, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def branch(self, name: str, start: str | None = None) -> None:
        git("checkout", "-q", "-b", name, *([start] if start else []), cwd=self.work)

    def switch(self, name: str) -> None:
        git("checkout", "-q", name, cwd=self.work)

    def merge(self, name: str) -> None:
        git("merge", "-q", "--no-ff", "--no-edit", name, cwd=self.work)

    def push(self) -> None:
        git("push", "-q", "--all", "origin", cwd=self.work)
        git("push", "-q", "--tags", "origin", cwd=self.work)


def product_history(folder: Path) -> History:
    """Seven `product-X_Y_Z` tags and every odd convention beside them."""
    h = History(folder)
    h.commit("feat: first shop", "v0.9", "nightly")  # a built-in form; a tag with no number
    h.commit("feat: basket", "product-1_0_0")
    h.commit("feat: search", "product-1_1_0")
    h.branch("release/1.1")
    h.commit("fix: basket rounding", "product-1_1_1")  # a hotfix line, never merged back
    h.switch("main")
    h.commit("feat: coupons", "product-1_2_0")
    h.branch("hotfixfoo")
    h.commit("fix: one customer's coupons", "product-1_2_0-hotfixfoo")  # a suffixed one-off
    h.switch("main")
    h.commit("feat: wish list", "product-1_3")  # two parts: 1.3.0
    h.commit("feat: gift cards", "product-1_4_0")
    h.commit("feat: lite build", "lite-1_4_0")  # the second product, same numbers
    h.commit("feat: reviews", "rc-1_5_0-1")  # a release candidate of another shape
    h.commit("fix: reviews paging", "product-1_5_0")
    h.branch("experiment")
    h.commit("feat!: a checkout that never shipped", "product-2_0_0")  # highest, not on main
    h.switch("main")
    h.commit("feat(api): ratings")
    h.push()
    return h


def _configure(folder: Path, extra: str = "") -> None:
    sync_settings(parse(PROJECT.format(extra=extra), base_dir=folder))


def _viewer(app: Any) -> dict[str, str]:
    create_user("vic", "pass", "viewer", display_name="Vic")
    return {"Authorization": f"Bearer {create_token('vic')[1]}"}


def test_unread_product_tags_get_a_rule_a_next_version_and_a_snippet_that_reads_them_all(app, tmp_path):
    h = product_history(tmp_path)
    _configure(tmp_path)  # template v{version}, built-in legacy forms: the product tags are unread
    headers = _viewer(app)
    client = app.test_client()

    data = client.get("/api/v1/projects/shop/adoption", headers=headers).get_json()
    understanding = data["understanding"]
    assert understanding == {"version_like": 12, "read": 1, "not_understood": 11,
                             "refusal": "11 of 12 tags are not understood; see the adoption page."}
    assert data["main_next"] is None and data["main_refusal"] == understanding["refusal"]
    shapes = {s["shape"]: s for s in data["shapes"]}
    product = shapes["product-N_N_N"]
    assert data["shapes"][0]["shape"] == "product-N_N_N"
    assert product["count"] == 7 and product["kind"] == "legacy" and product["key"] == "legacy_tags"
    # Under that rule alone main follows 1.5.0 and would get 1.6.0 (2.0.0 sits on a branch).
    assert (product["next_follows"], product["next_version"]) == ("1.5.0", "1.6.0")
    assert shapes["product-N_N"]["kind"] == shapes["rc-N_N_N-N"]["kind"] == "legacy"
    # The second product and the one-off carry numbers the product tags stand for: ignored.
    for shape in ("lite-N_N_N", "product-N_N_N-hotfixfoo"):
        assert shapes[shape]["kind"] == "variant" and shapes[shape]["key"] == "ignore_tags"
    variants = {c["tags"][0]: c for c in data["conflicts"] if c["kind"] == "variant"}
    assert variants["lite-1_4_0"]["tags"] == ["lite-1_4_0", "product-1_4_0"]
    assert "add the ignore rule" in variants["lite-1_4_0"]["settle"]
    assert data["proposed_next"] == "1.6.0"

    # The snippet is valid TOML for the project's table: the built-in form still needed (v0.9)
    # is kept, since legacy_tags replaces the built-ins.
    snippet = tomllib.loads(data["snippet"])
    assert snippet["legacy_tags"][0] == vs.DEFAULT_LEGACY[1] and f"1 of {len(vs.DEFAULT_LEGACY)}" in data["snippet_note"]
    assert snippet["legacy_tags"][1:] == [shapes[s]["proposed"] for s in shapes
                                          if s in ("product-N_N_N", "product-N_N", "rc-N_N_N-N")]
    assert set(snippet["ignore_tags"]) == {shapes[s]["proposed"] for s in
                                           ("lite-N_N_N", "product-N_N_N-hotfixfoo", "nightly")}
    assert '# tag_template = "product-{major}_{minor}_{patch}"' in data["snippet"]

    page = signed_in(app, "vic").get("/projects/shop/adoption").get_data(as_text=True)
    assert "<strong>12</strong> tags look like\n    versions; <strong>1</strong> is read." in page
    assert "11 of 12 tags are not understood; see the adoption page." in page
    assert "<code>product-N_N_N</code></td><td>7</td>" in page and "<strong>1.6.0</strong>" in page
    assert 'id="snippet"' in page and ("Configuration stays code: add this to your relapp TOML and run "
                                       "<code>flask --app relapp config sync FILE</code>.") in page
    out = app.test_cli_runner().invoke(args=["adopt", "shop"]).output
    assert "product-N_N_N" in out and "next from main would be 1.6.0" in out and adoption.CONFIG_SENTENCE in out
    assert db.session.scalar(select(Release)) is None  # the report writes nothing

    # Configured with the snippet, every tag that looks like a version is read or set aside.
    _configure(tmp_path, data["snippet"])
    after = adoption.adopt_report(get_project("shop"))
    assert (after.version_like, after.read, after.refusal, after.shapes) == (10, 10, None, [])
    assert {t["tag"] for t in after.recognised} >= {f"product-{v}" for v in
                                                     ("1_0_0", "1_1_0", "1_1_1", "1_2_0", "1_4_0", "1_5_0", "2_0_0")}
    assert (after.main_follows, after.main_next) == ("1.5.0", "1.6.0")
    assert [(c["kind"], c["version"]) for c in after.conflicts] == [("not_on_main", "2.0.0")]
    created = {r.version: r for r in adoption.adopt_into_db("shop")}
    assert set(created) == {"0.9.0", "1.0.0", "1.1.0", "1.1.1", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"}
    # 1.2.0 follows 1.1.0, not the hotfix 1.1.1 on a line that never merged back.
    assert created["1.2.0"].follows.version == "1.1.0" and created["1.5.0"].follows.version == "1.4.0"
    assert created["2.0.0"].follows.version == "1.5.0" and created["2.0.0"].kind == "major"
    # Each changelog starts at that predecessor and counts what git counts.
    for release in created.values():
        start = releases.previous_of(release)
        if start is not None:
            log, _ = releases.changelog(get_project("shop"), release)
            expected = git("rev-list", "--count", f"{start.tag}..{release.tag}", cwd=h.origin)
            assert log.commit_count == int(expected), release.version


def test_conflicts_each_say_how_to_settle_them(app, tmp_path):
    h = History(tmp_path)
    h.commit("feat: one", "product-1_0_0")
    h.commit("feat: two", "product-1_1_0", "v1.1.0")  # aliases on one commit: no conflict
    h.branch("release/1.1")
    h.commit("fix: three", "release-1.1.0")  # a second 1.1.0, elsewhere
    h.switch("main")
    h.commit("feat: four", "product-1_2_0")
    h.commit("feat: lite", "lite-1_2_0")
    h.branch("spike")
    h.commit("feat: never merged", "product-1_3_0")
    h.switch("main")
    h.commit("fix: five")
    h.push()
    _configure(tmp_path, 'tag_template = "product-{major}_{minor}_{patch}"')
    data = app.test_client().get("/api/v1/projects/shop/adoption", headers=_viewer(app)).get_json()
    conflicts = {c["kind"]: c for c in data["conflicts"]}
    assert set(conflicts) == {"same_version", "not_on_main", "variant"}
    same = conflicts["same_version"]
    assert same["version"] == "1.1.0" and set(same["tags"]) == {"product-1_1_0", "v1.1.0", "release-1.1.0"}
    assert "delete or rename the tags that are not the release" in same["settle"]
    assert conflicts["not_on_main"]["tags"] == ["product-1_3_0"]
    assert conflicts["not_on_main"]["settle"].startswith("product-1_3_0 (1.3.0) is not on main: it was cut from "
                                                         "a branch that never merged back")
    assert conflicts["variant"]["tags"] == ["lite-1_2_0", "product-1_2_0"]
    # Main follows 1.2.0; 1.3.0 is taken on the spike branch, so the next minor skips it.
    assert (data["main_follows"], data["main_next"]) == ("1.2.0", "1.4.0")


def _line_history(folder: Path) -> tuple[History, dict[str, str]]:
    """Lines, hotfixes, a merged-back hotfix, a release on a branch that never merged back."""
    h = History(folder)
    at = {"1.0.0": h.commit("feat: a", "v1.0.0"), "1.1.0": h.commit("feat: b", "v1.1.0")}
    h.branch("release/1.1")
    at["1.1.1"] = h.commit("fix: c", "v1.1.1")
    at["1.1.2"] = h.commit("fix: d", "v1.1.2")
    h.switch("main")
    at["1.2.0"] = h.commit("feat: e", "v1.2.0")
    h.branch("release/1.2")
    at["1.2.1"] = h.commit("fix: f", "v1.2.1")
    h.switch("main")
    h.branch("side")
    at["1.3.0"] = h.commit("feat: released from a branch, never merged", "v1.3.0")
    h.switch("main")
    at["1.4.0"] = h.commit("feat: g", "v1.4.0")
    h.branch("release/1.4", "v1.4.0")
    at["1.4.1"] = h.commit("fix: h", "v1.4.1")
    h.switch("main")
    h.merge("release/1.2")  # the 1.2.1 fix comes back to main
    at["1.5.0"] = h.commit("feat: i", "v1.5.0")
    at["2.0.0"] = h.commit("feat!: j", "v2.0.0", "not-a-version")
    h.push()
    return h, at


def test_adopted_releases_follow_by_reachability_from_one_git_walk(app, tmp_path):
    h, at = _line_history(tmp_path)
    _configure(tmp_path)
    calls: Counter[str] = Counter()

    def count(argv: tuple[str, ...]) -> None:
        calls[argv[0]] += 1

    gitops.on_git_call.append(count)
    try:
        adoption.adopt_into_db("shop")
    finally:
        gitops.on_git_call.remove(count)
    # The ancestry of eleven tags came from one `git log`; no git call per tag.
    assert calls["log"] == 1 and calls["merge-base"] == 0 and sum(calls.values()) <= 6, calls
    rows = {r.version: r for r in db.session.scalars(select(Release))}
    follows = {v: (r.follows.version if r.follows else None) for v, r in rows.items()}
    assert follows == {
        "1.0.0": None, "1.1.0": "1.0.0", "1.1.1": "1.1.0", "1.1.2": "1.1.1", "1.2.0": "1.1.0",
        "1.2.1": "1.2.0", "1.3.0": "1.2.0",
        "1.4.0": "1.2.0",  # not 1.3.0: that release sits on a branch 1.4.0 was not built from
        "1.4.1": "1.4.0", "1.5.0": "1.4.0", "2.0.0": "1.5.0",
    }
    for v, r in rows.items():  # each predecessor's tag is an ancestor, as git itself says
        if r.follows:
            git("merge-base", "--is-ancestor", at[r.follows.version], at[v], cwd=h.origin)
    assert {v: r.kind for v, r in rows.items() if r.kind != "minor"} == {
        "1.0.0": "major", "1.1.1": "hotfix", "1.1.2": "hotfix", "1.2.1": "hotfix", "1.4.1": "hotfix",
        "2.0.0": "major"}

    # A release adopted earlier by version order is corrected, and the correction audited.
    rows["1.4.0"].follows_id = rows["1.3.0"].id
    db.session.commit()
    assert adoption.adopt_into_db("shop") == []
    db.session.refresh(rows["1.4.0"])
    assert rows["1.4.0"].follows.version == "1.2.0"
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "release.adopt")
                               .order_by(AuditEvent.id.desc())).first()
    assert event.after["follows_corrected"] == ["1.4.0"]


def test_the_tag_graph_keeps_a_tagged_root_with_an_empty_tree(tmp_path):
    # git's decoration walk drops an empty root commit even when tagged; the graph adds it back.
    h = History(tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "initial", cwd=h.work)
    git("tag", "v0.1.0", cwd=h.work)
    root = git("rev-parse", "HEAD", cwd=h.work)
    tip = h.commit("feat: a", "v0.2.0")
    h.push()
    ws = gitops.Workspace(tmp_path / "clone", str(h.origin))
    ws.ensure()
    graph = ws.tag_graph({root, tip})
    assert graph[tip] == (root,) and graph[root] == ()
    versions = [Version.parse(v) for v in ("0.1.0", "0.2.0")]
    follows = adoption.follows_by_reachability(versions, dict(zip(versions, (root, tip), strict=True)), graph)
    assert follows == {versions[0]: None, versions[1]: versions[0]}
