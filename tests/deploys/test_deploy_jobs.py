"""Deploys run by a real worker process: command, webhook (signed, SSRF-guarded), manual, cancel."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from relapp.drivers import sign
from relapp.drivers.webhook import SIGNATURE_HEADER
from relapp.extensions import db
from relapp.models import AuditEvent, Deployment, Environment, Job, JobLogLine, utcnow
from tests.conftest import ROOT, run_worker_burst, work_queue

from .conftest import INJECTIONS, command_driver

SECRET = "whsec-0123456789abcdef"


def reload(deployment_id: int) -> Deployment:
    db.session.expire_all()
    return db.session.get(Deployment, deployment_id)


def log_of(job_id: int) -> list[str]:
    return list(db.session.scalars(select(JobLogLine.line).where(JobLogLine.job_id == job_id)
                                   .order_by(JobLogLine.seq)))


def set_driver(shop, env: str, driver: dict[str, Any]) -> None:
    shop.env(env).driver = driver
    db.session.commit()


def work(worker_env) -> None:
    """Run the queue in a real, forking worker process: command deploys run in its work-horse."""
    result = run_worker_burst(worker_env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_command_deploy_runs_in_a_worker_and_hostile_literals_stay_literal(shop, worker_env):
    shop.release("1.0.0")
    set_driver(shop, "qa", {**command_driver(shop.root), "secrets": {"API_TOKEN": "tok-very-secret-1"}})
    response = shop.deploy("1.0.0", "qa")
    assert response.status_code == 202
    deployment_id = response.get_json()["deployment"]["id"]
    work(worker_env)

    deployment = reload(deployment_id)
    assert deployment.status == "succeeded", deployment.message
    assert deployment.attempt == 1 and deployment.lease_until is None
    assert deployment.job.status == "succeeded"
    assert (shop.root / "state" / "qa").read_text() == "v1.0.0\n"
    argv = json.loads((shop.root / "state" / "qa.argv.json").read_text())
    assert argv == ["v1.0.0", "qa", *INJECTIONS]  # one argument each, never a shell, never split
    assert not list(shop.root.rglob("pwned")) and not (ROOT / "pwned").exists()

    lines = log_of(deployment.job_id)
    assert any(line.startswith("$ ") and "'; touch pwned'" in line for line in lines)
    assert "step 1/3: deploying v1.0.0 to qa" in lines
    assert "qa now runs v1.0.0" in lines
    assert "using token ****" in lines
    assert not any("tok-very-secret-1" in line for line in lines)
    assert lines[-1] == f"deployment {deployment_id} succeeded"

    actions = db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.target == f"deployment:{deployment_id}").order_by(AuditEvent.id)).all()
    assert actions == ["deploy.request", "deploy.start", "deploy.finish"]
    finish = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.finish"))
    assert finish.before["status"] == "running" and finish.after["status"] == "succeeded"

    envs = shop.get("/api/v1/projects/shop/environments").get_json()["environments"]
    qa = envs[0]
    assert qa["current"]["version"] == "1.0.0" and qa["current"]["deployed_by"] == "erin"
    assert qa["active_deployment"] is None and qa["driver"] == "command"
    assert "tok-very-secret-1" not in json.dumps(envs)
    job = shop.get(f"/api/v1/jobs/{deployment.job_id}").get_json()["job"]
    assert job["status"] == "succeeded" and job["deployment_id"] == deployment_id
    assert [line["line"] for line in job["lines"]] == lines


def test_a_failing_command_fails_the_deployment_and_frees_the_environment(shop, worker_env):
    shop.release("1.0.0")
    set_driver(shop, "qa", command_driver(shop.root, DEPLOY_FAIL="1"))
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    work(worker_env)
    deployment = reload(deployment_id)
    assert deployment.status == "failed"
    assert deployment.message == "exited with 3"
    assert deployment.job.status == "failed" and deployment.job.error == "exited with 3"
    assert "the health check failed" in log_of(deployment.job_id)
    set_driver(shop, "qa", command_driver(shop.root))
    assert shop.deploy("1.0.0", "qa").status_code == 202


@pytest.fixture
def cd_system():
    """A local CD system on 127.0.0.1 that records the deploy requests it gets."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({"headers": dict(self.headers), "body": body})
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], received
    httpd.shutdown()
    httpd.server_close()


def callback(shop, deployment_id: int, payload: dict[str, Any], secret: str | None = SECRET,
             signature: str | None = None) -> Any:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    elif secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, raw)
    
    return shop.client.post(f"/api/v1/deployments/{deployment_id}/status", data=raw, headers=headers)


def test_a_webhook_deploy_waits_for_the_signed_report_of_the_cd_system(shop, cd_system):
    port, received = cd_system
    shop.release("1.0.0")
    set_driver(shop, "qa", {"kind": "webhook", "url": f"http://127.0.0.1:{port}/deploy",
                            "secret": SECRET, "allow_hosts": [f"127.0.0.1:{port}"]})
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    work_queue()

    assert len(received) == 1
    sent = json.loads(received[0]["body"])
    assert received[0]["headers"][SIGNATURE_HEADER] == sign(SECRET, received[0]["body"])
    assert sent["deployment_id"] == deployment_id and sent["attempt"] == 1 and sent["tag"] == "v1.0.0"
    assert sent["callback_url"].endswith(f"/api/v1/deployments/{deployment_id}/status")
    deployment = reload(deployment_id)
    assert deployment.status == "running" and deployment.waiting_until is not None
    assert deployment.lease_until is None
    assert shop.get(f"/api/v1/deployments/{deployment_id}").get_json()["deployment"]["waiting"] is True
    # Still holding qa while it waits.
    assert shop.deploy("1.0.0", "qa", "eli").status_code == 409

    report = {"status": "succeeded", "attempt": 1, "message": "rolled out by CD"}
    assert callback(shop, deployment_id, report, secret="wrong-secret-000000").status_code == 401
    assert callback(shop, deployment_id, report, secret=None).status_code == 401
    assert callback(shop, deployment_id, report, signature="sha1=abc").status_code == 401
    assert reload(deployment_id).status == "running"
    stale = callback(shop, deployment_id, {**report, "attempt": 0})
    assert stale.status_code == 409
    assert "is on attempt 1, not 0" in stale.get_json()["detail"]

    response = callback(shop, deployment_id, report)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["deployment"]["status"] == "succeeded"
    deployment = reload(deployment_id)
    assert deployment.status == "succeeded" and deployment.message == "rolled out by CD"
    assert "cd:qa reported succeeded for qa: rolled out by CD" in log_of(deployment.job_id)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.report"))
    assert event.actor == "cd:qa" and event.after["status"] == "succeeded"
    # The same report again (a retried callback) is accepted and changes nothing.
    assert callback(shop, deployment_id, report).status_code == 200
    assert callback(shop, deployment_id, {**report, "status": "failed"}).status_code == 409


def test_a_webhook_secret_from_the_environment_signs_the_report_that_ends_an_unknown_state(
        shop, cd_system, monkeypatch):
    port, received = cd_system
    monkeypatch.setenv("SHOP_QA_CD_SECRET", SECRET)
    shop.release("1.0.0")
    set_driver(shop, "qa", {"kind": "webhook", "url": f"http://127.0.0.1:{port}/deploy",
                            "secret_env": "SHOP_QA_CD_SECRET", "allow_hosts": [f"127.0.0.1:{port}"]})
    qa = shop.env("qa")
    qa.unknown_reason, qa.unknown_since = "last deploy abandoned", utcnow()  # an earlier loss
    db.session.commit()
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    work_queue()
    assert received[0]["headers"][SIGNATURE_HEADER] == sign(SECRET, received[0]["body"])

    # A body nested beyond the parser's depth, signed: a sentence, not a 500.
    deep = b"[" * 100_000 + b"]" * 100_000
    refused = shop.client.post(f"/api/v1/deployments/{deployment_id}/status", data=deep, headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, deep)})
    assert refused.status_code == 400 and refused.mimetype == "application/problem+json"
    # The report signed with the variable's value is accepted (it was refused as unsigned when
    # only a literal `secret` was read), and its success ends qa's unknown state.
    report = {"status": "succeeded", "attempt": 1}
    assert callback(shop, deployment_id, report).status_code == 200
    db.session.expire_all()
    assert reload(deployment_id).status == "succeeded"
    assert (shop.env("qa").unknown_reason, shop.env("qa").unknown_since) == (None, None)


def test_a_webhook_to_an_internal_address_is_refused_and_nothing_is_sent(shop, cd_system):
    port, received = cd_system
    shop.release("1.0.0")
    set_driver(shop, "qa", {"kind": "webhook", "url": f"http://127.0.0.1:{port}/deploy",
                            "secret": SECRET})
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    work_queue()
    deployment = reload(deployment_id)
    assert deployment.status == "failed"
    assert deployment.message.startswith("Webhook target refused:")
    assert "loopback" in deployment.message
    assert received == []


def test_a_manual_deploy_is_marked_done_by_someone_who_may_deploy_there(shop):
    shop.release("1.0.0")
    set_driver(shop, "qa", {"kind": "manual", "instructions": "Run ./ship {tag} on the qa box."})
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    work_queue()
    deployment = reload(deployment_id)
    assert deployment.status == "running" and deployment.waiting_until is not None
    assert "Run ./ship v1.0.0 on the qa box." in log_of(deployment.job_id)
    # No webhook secret: every signature fails (closed), and a viewer may not report.
    assert callback(shop, deployment_id, {"status": "succeeded", "attempt": 1},
                    signature="sha256=" + "0" * 64).status_code == 401
    path = f"/api/v1/deployments/{deployment_id}/status"
    refused = shop.post(path, "vic", {"status": "succeeded"})
    assert refused.status_code == 403
    assert "vic (viewer) may not report on deploys to qa" in refused.get_json()["detail"]
    done = shop.post(path, "eli", {"status": "succeeded", "message": "shipped by hand"})
    assert done.status_code == 200
    assert reload(deployment_id).status == "succeeded"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.report"))
    assert event.actor == "eli"


def test_cancelling_a_queued_deploy_frees_the_environment_and_the_job_does_nothing(shop):
    shop.release("1.0.0")
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    assert shop.post(f"/api/v1/deployments/{deployment_id}/cancel", "vic").status_code == 403
    response = shop.post(f"/api/v1/deployments/{deployment_id}/cancel", "erin",
                         {"reason": "wrong build"})
    assert response.status_code == 200
    assert response.get_json()["deployment"]["status"] == "cancelled"
    work_queue()
    deployment = reload(deployment_id)
    assert deployment.status == "cancelled" and deployment.message == "cancelled by erin: wrong build"
    assert db.session.get(Job, deployment.job_id).status == "cancelled"
    assert not (shop.root / "state").exists()
    assert shop.deploy("1.0.0", "qa").status_code == 202
    assert shop.post(f"/api/v1/deployments/{deployment_id}/cancel", "erin").status_code == 409


def test_a_deploy_job_that_breaks_after_its_claim_ends_its_deployment_at_once(shop):
    shop.release("1.0.0")
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    # A driver row no sync would write (edited by hand): the job breaks after claiming the deploy.
    db.session.execute(update(Environment).where(Environment.id == shop.env("qa").id)
                       .values(driver=["not", "a", "table"]))
    db.session.commit()
    work_queue()
    deployment = reload(deployment_id)
    # Failed by the worker at once with a sentence, not left running for the reaper to call
    # abandoned while the worker lives; qa is free again.
    assert deployment.status == "failed" and deployment.attempt == 1
    assert deployment.message.startswith("The deploy job stopped unexpectedly (")
    assert deployment.lease_until is None
    assert db.session.get(Job, deployment.job_id).status == "failed"
    assert not db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "deploy.abandoned")).all()
