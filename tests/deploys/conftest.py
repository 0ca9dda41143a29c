"""Fixtures for the deploy pipeline: a project with qa → beta → prod, people with tokens, releases."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from relapp.extensions import db
from relapp.models import (
    AuditEvent,
    Decision,
    Deployment,
    Environment,
    Job,
    Project,
    Release,
    User,
    utcnow,
)
from relapp.services.accounts import create_token, create_user

PEOPLE = (("vic", "viewer"), ("quinn", "qa"), ("tess", "qa"), ("erin", "engineer"),
          ("eli", "engineer"), ("rita", "release"), ("ada", "admin"))

DEPLOY_SCRIPT = textwrap.dedent('''
    """A tiny deploy: prints progress, then records the tag and its argv in state/<environment>."""
    import json, os, sys, time
    tag, environment, *rest = sys.argv[1:]
    steps = int(os.environ.get("DEPLOY_STEPS", "3"))
    delay = float(os.environ.get("DEPLOY_DELAY", "0"))
    pidfile = os.environ.get("DEPLOY_PIDFILE")
    if pidfile:
        with open(pidfile, "w") as fh:
            fh.write(str(os.getpid()))
    for step in range(1, steps + 1):
        print(f"step {step}/{steps}: deploying {tag} to {environment}", flush=True)
        time.sleep(delay)
    if os.environ.get("API_TOKEN"):
        print("using token " + os.environ["API_TOKEN"], flush=True)
    if os.environ.get("DEPLOY_FAIL"):
        print("the health check failed", flush=True)
        sys.exit(3)
    os.makedirs("state", exist_ok=True)
    with open(os.path.join("state", environment), "w") as fh:
        fh.write(tag + "\\n")
    with open(os.path.join("state", environment + ".argv.json"), "w") as fh:
        json.dump(sys.argv[1:], fh)
    with open(os.path.join("state", "runs.log"), "a") as fh:
        fh.write(f"{environment} {tag}\\n")
    print(f"{environment} now runs {tag}", flush=True)
''')

INJECTIONS = ["; touch pwned", "$(id)", "--opt", "`touch pwned`", "| touch pwned"]


@dataclass
class Shop:
    """The test project, its people and their API tokens."""

    project: Project
    users: dict[str, User]
    tokens: dict[str, str]
    root: Path
    client: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def env(self, name: str) -> Environment:
        return next(e for e in self.project.environments if e.name == name)

    def headers(self, user: str, **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}", **more}

    def post(self, path: str, user: str, json: Any = None, **headers: str) -> Any:
        return self.client.post(path, json=json, headers=self.headers(user, **headers))

    def get(self, path: str, user: str = "vic") -> Any:
        return self.client.get(path, headers=self.headers(user))

    def deploy(self, version: str, env: str, user: str = "erin", **body: Any) -> Any:
        return self.post(f"/api/v1/projects/shop/releases/{version}/deployments", user,
                         {"environment": env, **body})

    def decide(self, version: str, env: str, user: str, decision: str, comment: str = "",
               bugs: list[str] | None = None) -> Any:
        return self.post(f"/api/v1/projects/shop/releases/{version}/decisions", user,
                         {"environment": env, "decision": decision, "comment": comment,
                          "bugs": bugs or []})

    def release(self, version: str, *, kind: str = "minor", state: str = "tagged",
                by: str = "erin") -> Release:
        major, minor, patch = (int(p) for p in version.split("."))
        row = Release(project_id=self.project.id, version=version, major=major, minor=minor,
                      patch=patch, kind=kind, tag=f"v{version}",
                      sha=(f"{major:x}{minor:x}{patch:x}" * 40)[:40] if state == "tagged" else None,
                      state=state, created_by_id=self.users[by].id)
        db.session.add(row)
        db.session.commit()
        return row

    def deployed(self, release: Release, env: str, by: str = "erin") -> Deployment:
        """Record a finished, successful deployment (as if it had run)."""
        row = Deployment(release_id=release.id, environment_id=self.env(env).id,
                         status="succeeded", requested_by_id=self.users[by].id, attempt=1,
                         started_at=utcnow(), finished_at=utcnow())
        db.session.add(row)
        db.session.commit()
        return row

    def decided(self, release: Release, env: str, by: str, decision: str, comment: str = "",
                bugs: tuple[str, ...] = (), ago: float = 0) -> Decision:
        row = Decision(release_id=release.id, environment_id=self.env(env).id, decision=decision,
                       comment=comment, bugs=list(bugs), by_id=self.users[by].id,
                       created_at=utcnow() - timedelta(seconds=ago))
        db.session.add(row)
        db.session.commit()
        return row


def counts() -> dict[str, int]:
    """Row counts of everything a deploy or decision writes."""
    return {model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Deployment, Job, AuditEvent, Decision)}


def command_driver(root: Path, **env: str) -> dict[str, Any]:
    """A command driver running the tiny deploy script with hostile literals in its argv."""
    return {"kind": "command",
            "argv": [sys.executable, str(root / "deploy.py"), "{tag}", "{environment}", *INJECTIONS],
            "cwd": str(root), "timeout": 120, "env": dict(env)}


@pytest.fixture
def shop(app_ctx: Any, tmp_path: Path) -> Shop:
    """Project `shop`: qa (command driver) → beta (needs qa's go) → prod (needs beta's go,
    release/admin only, separation of duties); seven people with tokens."""
    root = tmp_path / "deploy-root"
    root.mkdir()
    (root / "deploy.py").write_text(DEPLOY_SCRIPT)
    project = Project(key="shop", name="Shop", remote_url="/nowhere.git",
                      issue_key_pattern=r"SHOP-\d+",
                      issue_url_template="https://jira.example.com/browse/{key}")
    db.session.add(project)
    db.session.flush()
    driver = command_driver(root)
    for position, (name, requires, deploy_roles, sod) in enumerate((
            ("qa", None, ["engineer", "release", "admin"], False),
            ("beta", "qa", ["engineer", "release", "admin"], False),
            ("prod", "beta", ["release", "admin"], True))):
        db.session.add(Environment(project_id=project.id, name=name, position=position,
                                   requires_go_from=requires, deploy_roles=deploy_roles,
                                   decide_roles=["qa", "release", "admin"],
                                   separation_of_duties=sod, driver=driver))
    db.session.commit()
    users, tokens = {}, {}
    for name, role in PEOPLE:
        users[name] = create_user(name, "pass", role)
        tokens[name] = create_token(name)[1]
    db.session.refresh(project)
    return Shop(project=project, users=users, tokens=tokens, root=root, client=app_ctx.test_client())


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
