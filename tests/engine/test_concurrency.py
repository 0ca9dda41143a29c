"""Atomic version allocation: 20 hotfix requests at once on one line give 20 distinct, consecutive
patch versions whose tags all reach the remote, each containing the one before."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from semver import Version
from sqlalchemy import select

from relapp.extensions import db
from relapp.models import Release
from tests.conftest import git, work_queue

N = 20


def test_twenty_concurrent_hotfixes_get_consecutive_versions_that_each_contain_the_last(app, demo_project):
    client = app.test_client()
    assert client.post("/api/v1/projects/demo/releases", json={}, headers=demo_project.headers()).status_code == 202
    work_queue()
    fixes = [demo_project.commit_on_main(f"platform/fix{i}.txt", f"{i}\n", f"fix(platform): fix number {i}")
             for i in range(N)]

    def ask(sha: str) -> tuple[int, dict]:
        with app.test_client() as own:
            response = own.post("/api/v1/projects/demo/releases/1.3.0/hotfixes", json={"commits": [sha]},
                                headers=demo_project.headers())
            return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=N) as pool:
        answers = list(pool.map(ask, fixes))
    assert [status for status, _ in answers] == [202] * N, answers
    versions = sorted(Version.parse(body["version"]) for _, body in answers)
    assert [str(v) for v in versions] == [f"1.3.{i}" for i in range(1, N + 1)]

    work_queue()
    states = {r.version: r.state for r in db.session.scalars(select(Release).where(Release.kind == "hotfix"))}
    assert states == {f"1.3.{i}": "tagged" for i in range(1, N + 1)}
    previous = "v1.3.0"
    for i in range(1, N + 1):
        tag = f"v1.3.{i}"
        assert git("cat-file", "-t", tag, cwd=demo_project.origin) == "tag"
        # each hotfix contains the previous one
        git("merge-base", "--is-ancestor", previous, tag, cwd=demo_project.origin)
        previous = tag
    picked = git("log", "--format=%B", "v1.3.0..v1.3.20", cwd=demo_project.origin)
    assert all(f"(cherry picked from commit {sha})" in picked for sha in fixes)
