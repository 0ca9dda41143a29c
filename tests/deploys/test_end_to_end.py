"""The demo flow through the API with real git and a real RQ worker (in-process, as RQ's testing
docs do; the forked work-horse has its own tests): cut → qa → beta refused → qa no-go with a bug →
hotfix → qa → qa go → beta → beta go → prod."""

from __future__ import annotations

import time

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import AuditEvent
from tests.conftest import work_queue

from .test_sse import parse


def test_the_demo_flow_from_cut_to_prod(app, demo_project):
    started = time.monotonic()
    client = app.test_client()

    def call(method: str, path: str, user: str, json: dict | None = None):
        return client.open(path, method=method, json=json, headers=demo_project.headers(user))

    def work() -> None:
        db.session.commit()
        work_queue()

    def deploy(version: str, env: str, user: str = "erin") -> dict:
        response = call("POST", f"/api/v1/projects/demo/releases/{version}/deployments", user,
                        {"environment": env})
        assert response.status_code == 202, response.get_json()
        work()
        deployment = call("GET", f"/api/v1/deployments/{response.get_json()['deployment']['id']}",
                          user).get_json()["deployment"]
        assert deployment["status"] == "succeeded", deployment
        return deployment

    def decide(version: str, env: str, user: str, decision: str, comment: str, bugs=()):
        response = call("POST", f"/api/v1/projects/demo/releases/{version}/decisions", user,
                        {"environment": env, "decision": decision, "comment": comment,
                         "bugs": list(bugs)})
        assert response.status_code == 201, response.get_json()

    cut = call("POST", "/api/v1/projects/demo/releases", "erin", {})
    assert cut.status_code == 202, cut.get_json()
    version = cut.get_json()["version"]
    work()

    first = deploy(version, "qa")
    stream = call("GET", f"/api/v1/jobs/{first['job']['id']}/stream", "vic")
    events = parse(stream.get_data(as_text=True))
    assert any(e.get("event") == "line" and "qa now runs" in e["data"]["line"] for e in events)
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "succeeded"
    assert (demo_project.folder / "deployed" / "qa").read_text().strip() == f"v{version}"

    refused = call("POST", f"/api/v1/projects/demo/releases/{version}/deployments", "erin",
                   {"environment": "beta"})
    assert refused.status_code == 409
    assert f"beta needs a go from qa for {version}; qa has not decided yet" in refused.get_json()["detail"]

    decide(version, "qa", "quinn", "no-go", "refunds round wrongly", ["PAY-42"])
    refused = call("POST", f"/api/v1/projects/demo/releases/{version}/deployments", "erin",
                   {"environment": "beta"})
    assert "1 bug (PAY-42)" in refused.get_json()["detail"]

    fix = demo_project.commit_on_main("services/payments/rounding.txt", "half-even\n",
                                      "fix(payments): round refunds half-even (#1001)\n\nFixes PAY-42")
    hotfix = call("POST", f"/api/v1/projects/demo/releases/{version}/hotfixes", "erin",
                  {"commits": [fix]})
    assert hotfix.status_code == 202, hotfix.get_json()
    patched = hotfix.get_json()["version"]
    work()

    deploy(patched, "qa")
    decide(patched, "qa", "quinn", "go", "refunds fixed")
    deploy(patched, "beta")
    decide(patched, "beta", "quinn", "go", "sane on beta")
    deploy(patched, "prod", "rita")
    assert (demo_project.folder / "deployed" / "prod").read_text().strip() == f"v{patched}"

    envs = call("GET", "/api/v1/projects/demo/environments", "vic").get_json()["environments"]
    assert [(e["name"], e["current"]["version"]) for e in envs] == [
        ("qa", patched), ("beta", patched), ("prod", patched)]
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("deploy.finish") == 4 and actions.count("decision.record") == 3
    print(f"\ndemo flow end to end (API, real git, 7 queue runs): "
          f"{time.monotonic() - started:.1f} s")
