"""User-supplied refs and SHAs are refused with a 400 before git sees them, and nothing is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from relapp import gitops
from tests.conftest import git, work_queue

CORPUS = [
    "-D", "--upload-pack=x", "--output=OUT", "a..b", "x.lock", "@{", "a b", "../../hooks/x",
    "ctl\x01char", "new\nline", "x" * 1024, "ext::sh -c touch pwned", "HEAD@{1}", "--exec=touch pwned",
    "$(touch pwned)", "`touch pwned`", "; touch pwned", "refs/../x", "",
]


@pytest.fixture
def git_calls():
    calls: list[tuple[str, ...]] = []
    gitops.on_git_call.append(calls.append)
    yield calls
    gitops.on_git_call.remove(calls.append)


def _snapshot(demo) -> tuple[str, str, set[Path]]:
    return (git("for-each-ref", cwd=demo.origin), git("for-each-ref", cwd=demo.work),
            set(demo.folder.parent.rglob("*")))


@pytest.mark.parametrize("name", CORPUS, ids=lambda n: repr(n)[:30])
def test_a_hostile_ref_is_refused_before_any_git_call(app, demo_project, git_calls, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = name.replace("OUT", str(tmp_path / "out"))
    client = app.test_client()
    before = _snapshot(demo_project)
    git_calls.clear()
    cut = client.post("/api/v1/projects/demo/releases", json={"ref": name}, headers=demo_project.headers())
    assert cut.status_code == 400, cut.get_json()
    assert cut.mimetype == "application/problem+json" and cut.get_json()["detail"]
    assert git_calls == []
    assert _snapshot(demo_project) == before
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", CORPUS, ids=lambda n: repr(n)[:30])
def test_a_hostile_commit_in_a_hotfix_is_refused_before_any_git_call(app, demo_project, git_calls, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = app.test_client()
    client.post("/api/v1/projects/demo/releases", json={}, headers=demo_project.headers())
    work_queue()
    before = _snapshot(demo_project)
    git_calls.clear()
    response = client.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [name]},
                           headers=demo_project.headers())
    assert response.status_code == 400, response.get_json()
    assert git_calls == []
    assert _snapshot(demo_project) == before
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("version", ["1.3", "../1.3.0", "1.3.0; rm -rf /", "-1.3.0", "x" * 300])
def test_a_bad_version_in_the_url_is_a_clear_error(app, demo_project, version):
    response = app.test_client().get(f"/api/v1/projects/demo/releases/{version}", headers=demo_project.headers())
    assert response.status_code in (400, 404)
    assert response.mimetype == "application/problem+json"
