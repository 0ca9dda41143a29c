"""Remote credentials never stored (issue 9, finding 3): a real git remote over HTTP that wants
Basic auth, credentials given at run time from an environment variable through git's credential
helper, and nothing of them in .git/config, argv, a file, the job log, the audit or a page."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from relapp import gitops
from relapp.gitops import GitError, Workspace
from tests.conftest import Demo, git, signed_in

from .authremote import AuthRemote, serving

USER = "alice"
PASSWORD = "s3cr3t-Token-0123456789abcdef"  # 29 characters: masked in parts and in base64 too
VARIABLE = "RELAPP_TEST_REMOTE_CREDENTIALS"  # not RELAPP_*-guarded: only the test sets it


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[AuthRemote]:
    """origin.git with one commit on main, served over HTTP to alice with PASSWORD only."""
    root = tmp_path / "served"
    root.mkdir()
    git("init", "-q", "--bare", "-b", "main", str(root / "origin.git"))
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed))
    (seed / "a.txt").write_text("a\n")
    git("add", "a.txt", cwd=seed)
    git("commit", "-q", "-m", "first", cwd=seed)
    git("push", "-q", str(root / "origin.git"), "main", cwd=seed)
    with serving(root, USER, PASSWORD) as server:
        yield server


@pytest.fixture
def no_stored_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A global git configuration that would store every credential git uses in a file: relapp's
    git must never let it (the file must stay absent)."""
    home = tmp_path / "home"
    home.mkdir()
    store = home / ".git-credentials"
    config = home / ".gitconfig"
    config.write_text(f"[credential]\n\thelper = store --file={store}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    return store


@pytest.fixture
def argvs() -> Iterator[list[tuple[str, ...]]]:
    """The argv (after `git`) of every git process relapp starts during the test."""
    seen: list[tuple[str, ...]] = []
    gitops.on_git_call.append(seen.append)
    yield seen
    gitops.on_git_call.remove(seen.append)


def files_hold(folder: Path, needle: str) -> list[Path]:
    """Files under folder whose bytes contain needle."""
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_fetch_and_push_take_credentials_from_the_named_variable_and_store_them_nowhere(
        remote: AuthRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        no_stored_credentials: Path, argvs: list[tuple[str, ...]]) -> None:
    monkeypatch.setenv(VARIABLE, f"{USER}:{PASSWORD}")
    ws = Workspace(tmp_path / "clone", remote.url(), credentials_env=VARIABLE, timeout=60)
    ws.ensure()
    ws.fetch()
    sha = ws.resolve("main")
    ref = ws.create_tag("v1.0.0", sha, "first release", "Rel App", "rel@example.com")
    ws.push([f"{ref}:{ref}"])
    assert git("rev-parse", "v1.0.0^{commit}", cwd=remote.root / "origin.git") == sha
    # Git asked once without credentials (the 401), then every request carried them.
    assert any(ok for _, _, ok in remote.requests)
    assert all(ok for method, _, ok in remote.requests if method == "POST")
    assert not any(PASSWORD in path for _, path, _ in remote.requests)
    # Nowhere: not in argv (readable by anyone in /proc), the clone, or a credential store.
    assert argvs and not any(PASSWORD in arg for argv in argvs for arg in argv)
    assert files_hold(ws.path, PASSWORD) == []
    assert git("config", "--get", "remote.origin.url", cwd=ws.path) == remote.url()
    assert not no_stored_credentials.exists()


def test_a_token_alone_is_sent_with_a_placeholder_user(remote: AuthRemote, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    remote.user = "x-access-token"  # what relapp sends with a token that names no user
    monkeypatch.setenv(VARIABLE, PASSWORD)
    Workspace(tmp_path / "clone", remote.url(), credentials_env=VARIABLE, timeout=60).ensure()


def test_without_credentials_the_remote_refusal_is_a_sentence(
        remote: AuthRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GitError) as none:
        Workspace(tmp_path / "a", remote.url(), timeout=60).ensure()
    assert "the remote asks for credentials and none were given" in str(none.value)
    assert "remote_credentials_env" in str(none.value)

    monkeypatch.setenv(VARIABLE, f"{USER}:wrong-{PASSWORD}")
    with pytest.raises(GitError) as wrong:
        Workspace(tmp_path / "b", remote.url(), credentials_env=VARIABLE, timeout=60).ensure()
    assert "the remote refused the credentials it was given" in str(wrong.value)
    assert PASSWORD not in str(wrong.value)

    monkeypatch.delenv(VARIABLE)
    with pytest.raises(GitError) as unset:
        Workspace(tmp_path / "c", remote.url(), credentials_env=VARIABLE, timeout=60).ensure()
    assert str(unset.value) == (
        f"The environment variable {VARIABLE} named by the project's remote_credentials_env is "
        "not set (or empty) in this relapp process; set it to user:token.")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_an_old_clone_with_credentials_in_its_config_loses_them_on_the_next_fetch(
        remote: AuthRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, f"{USER}:{PASSWORD}")
    ws = Workspace(tmp_path / "clone", remote.url(), credentials_env=VARIABLE, timeout=60)
    ws.ensure()
    # As an older relapp left it: the credentials written into origin's URL (and a push URL).
    old = remote.url().replace("http://", f"http://{USER}:{PASSWORD}@")
    git("remote", "set-url", "origin", old, cwd=ws.path)
    git("config", "remote.origin.pushurl", old, cwd=ws.path)
    assert files_hold(ws.git_dir, PASSWORD)
    ws.fetch()  # no ensure() first: a page's fetch_if_older goes straight to it
    assert files_hold(ws.path, PASSWORD) == []
    assert git("config", "--get", "remote.origin.url", cwd=ws.path) == remote.url()


def test_an_old_remote_url_with_credentials_still_works_and_is_not_written(
        remote: AuthRemote, tmp_path: Path, no_stored_credentials: Path) -> None:
    old = remote.url().replace("http://", f"http://{USER}:{PASSWORD}@")
    ws = Workspace(tmp_path / "clone", old, timeout=60)
    ws.ensure()
    ws.fetch()
    assert ws.remote_ref("refs/heads/main") is not None
    assert files_hold(ws.path, PASSWORD) == []
    assert PASSWORD not in repr(ws) and not no_stored_credentials.exists()


def test_the_credential_helper_passes_awkward_characters_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    awkward = "p@ss:w%rd $HOME `id` \"q\" 'r' \\n;|&"
    root = tmp_path / "served"
    root.mkdir()
    git("init", "-q", "--bare", "-b", "main", str(root / "origin.git"))
    with serving(root, USER, awkward) as server:
        monkeypatch.setenv(VARIABLE, f"{USER}:{awkward}")
        ws = Workspace(tmp_path / "clone", server.url(), credentials_env=VARIABLE, timeout=60)
        ws.ensure()  # an empty repository clones fine
        assert any(ok for _, _, ok in server.requests)
    with pytest.raises(GitError, match="line break"):
        monkeypatch.setenv(VARIABLE, f"{USER}:two\nlines")
        Workspace(tmp_path / "other", server.url(), credentials_env=VARIABLE).ensure()


# -- through the app: the job log, the audit and the pages -------------------------------------


@pytest.fixture
def demo_over_http(app_ctx: Any, demo_project: Demo) -> Iterator[tuple[Demo, AuthRemote]]:
    """The demo project's origin served over authenticated HTTP."""
    with serving(demo_project.folder, USER, PASSWORD) as server:
        yield demo_project, server


def test_a_release_over_an_authenticated_remote_leaks_the_credential_nowhere(
        app_ctx: Any, demo_over_http: tuple[Demo, AuthRemote]) -> None:
    from relapp.extensions import db
    from relapp.models import AuditEvent, JobLogLine, Project, User
    from relapp.services import adoption
    from relapp.services import releases as svc
    from relapp.services.projects import sync_settings
    from relapp.settings import parse
    from tests.conftest import work_queue

    demo, server = demo_over_http
    project = db.session.scalar(select(Project).where(Project.key == "demo"))
    assert project is not None
    # A project row from before credentials were refused at sync: the URL holds them (synced
    # below through the service itself, so its audit event is the one the service writes).
    settings = parse((demo.folder / "relapp.toml").read_text(), base_dir=demo.folder)
    with_credentials = server.url().replace("http://", f"http://{USER}:{PASSWORD}@")
    sync_settings(tuple(dataclasses.replace(s, remote=with_credentials) for s in settings))
    adoption.adopt_into_db("demo")
    release, job = svc.cut(project, db.session.scalar(select(User).where(User.username == "erin")))
    job_id = job.id
    work_queue()
    assert svc.get_release(project, release.version).state == "tagged"
    assert demo.remote_tag(release.tag) is not None
    assert any(ok for _, _, ok in server.requests)

    clone = Path(app_ctx.config["RELAPP_REPOS_DIR"]) / "demo"
    assert files_hold(clone, PASSWORD) == []
    lines = db.session.scalars(select(JobLogLine.line)).all()
    assert lines and not any(PASSWORD in line or f"{USER}:" in line for line in lines)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "project.update")).all()
    assert events and all(PASSWORD not in str((e.before, e.after, e.detail)) for e in events)
    viewer = signed_in(app_ctx, "vic")
    for page in ("/audit", f"/releases/demo/{release.version}", f"/jobs/{job_id}"):
        response = viewer.get(page)
        assert response.status_code == 200, page
        assert PASSWORD not in response.get_data(as_text=True), page
    api = viewer.get("/api/v1/audit", headers=demo.headers("vic"))
    assert api.status_code == 200 and PASSWORD not in api.get_data(as_text=True)
    assert "http://***@127.0.0.1" in api.get_data(as_text=True)


def test_a_release_with_credentials_from_the_environment_stores_them_nowhere(
        app_ctx: Any, demo_over_http: tuple[Demo, AuthRemote], monkeypatch: pytest.MonkeyPatch,
        no_stored_credentials: Path) -> None:
    """The project names the variable (remote_credentials_env); services.releases.workspace
    hands that name to gitops.Workspace, which reads the value only when git runs."""
    from relapp.extensions import db
    from relapp.models import AuditEvent, JobLogLine, Project, User
    from relapp.services import adoption
    from relapp.services import releases as svc
    from relapp.services.projects import sync_settings
    from relapp.settings import parse
    from tests.conftest import work_queue

    demo, server = demo_over_http
    monkeypatch.setenv(VARIABLE, f"{USER}:{PASSWORD}")
    settings = parse((demo.folder / "relapp.toml").read_text(), base_dir=demo.folder)
    sync_settings(tuple(dataclasses.replace(s, remote=server.url(), remote_credentials_env=VARIABLE)
                        for s in settings))
    project = db.session.scalar(select(Project).where(Project.key == "demo"))
    assert project is not None and project.remote_credentials_env == VARIABLE
    adoption.adopt_into_db("demo")
    release, job = svc.cut(project, db.session.scalar(select(User).where(User.username == "erin")))
    job_id = job.id
    work_queue()
    assert svc.get_release(project, release.version).state == "tagged"
    assert demo.remote_tag(release.tag) is not None
    assert all(ok for method, _, ok in server.requests if method == "POST")

    assert files_hold(Path(app_ctx.config["RELAPP_REPOS_DIR"]), PASSWORD) == []
    assert not no_stored_credentials.exists()
    stored = [*db.session.scalars(select(JobLogLine.line)),
              *(str((e.target, e.before, e.after, e.detail))
                for e in db.session.scalars(select(AuditEvent)))]
    assert stored and not any(PASSWORD in text for text in stored)
    viewer = signed_in(app_ctx, "vic")
    for page in ("/audit", f"/releases/demo/{release.version}", f"/jobs/{job_id}"):
        response = viewer.get(page)
        assert response.status_code == 200 and PASSWORD not in response.get_data(as_text=True)
