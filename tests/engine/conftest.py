"""A demo-like project: the generated demo history on a bare remote in tmp_path, its configuration
loaded, users with tokens, and helpers to run jobs through a real RQ worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relapp import demo
from relapp.services.accounts import create_token, create_user
from relapp.services.projects import sync_settings
from relapp.settings import parse
from tests.conftest import git, work_queue  # noqa: F401 - re-exported for the folder's tests


@dataclass
class Demo:
    folder: Path
    origin: Path
    work: Path
    tokens: dict[str, str]

    def headers(self, user: str = "erin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def commit_on_main(self, path: str, content: str, message: str) -> str:
        """Push a new commit to origin's main, as an engineer would."""
        git("checkout", "-q", "main", cwd=self.work)
        git("pull", "-q", "--ff-only", "origin", "main", cwd=self.work)
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        git("add", path, cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def remote_tag(self, name: str) -> tuple[str, str] | None:
        """(object type, peeled commit) of a tag on the bare remote."""
        out = git("for-each-ref", f"refs/tags/{name}", "--format=%(objecttype) %(*objectname) %(objectname)",
                  cwd=self.origin)
        if not out:
            return None
        kind, peeled, obj = out.split(" ")
        return kind, peeled or obj


@pytest.fixture
def demo_project(app_ctx: Any, tmp_path: Path) -> Demo:
    """The generated demo history on a bare remote, its configuration synced, five users with
    tokens (password 'pass') and a working clone."""
    folder = tmp_path / "demo"
    config = demo.build(folder)
    sync_settings(parse(config.read_text(), base_dir=folder))
    tokens = {}
    for name, role in (("vic", "viewer"), ("quinn", "qa"), ("erin", "engineer"), ("rita", "release"), ("ada", "admin")):
        create_user(name, "pass", role, display_name=name.title())
        tokens[name] = create_token(name)[1]
    work = tmp_path / "work"
    git("clone", "-q", str(folder / "origin.git"), str(work))
    return Demo(folder=folder, origin=folder / "origin.git", work=work, tokens=tokens)


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
