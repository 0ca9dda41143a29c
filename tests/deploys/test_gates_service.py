"""The pipeline gates through the API: each refusal answers with its sentence and writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from relapp.extensions import db
from relapp.models import AuditEvent, Deployment

from .conftest import counts


def refused(shop, status, version, env, *phrases, user="erin", **body):
    """Ask to deploy and assert a refusal: the status, every phrase in the detail, reasons listed,
    nothing written."""
    before = counts()
    response = shop.deploy(version, env, user, **body)
    assert response.status_code == status, response.get_json()
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    for phrase in phrases:
        assert phrase in problem["detail"], problem["detail"]
    assert problem["reasons"] and all(r["sentence"] for r in problem["reasons"])
    assert counts() == before
    return problem


def test_a_release_without_a_tag_is_refused(shop):
    shop.release("1.0.0", state="pending")
    problem = refused(shop, 409, "1.0.0", "qa", "1.0.0 has no tag yet: wait for its tag job to finish.")
    assert [r["code"] for r in problem["reasons"]] == ["not-tagged"]


def test_beta_needs_qa_go_and_says_when_qa_said_no_go_with_the_bugs(shop):
    release = shop.release("1.0.0")
    shop.deployed(release, "qa")
    refused(shop, 409, "1.0.0", "beta", "beta needs a go from qa for 1.0.0; qa has not decided yet")
    no_go = shop.decided(release, "qa", "quinn", "no-go", "checkout broken",
                         ("SHOP-1", "SHOP-2"), ago=60)
    refused(shop, 409, "1.0.0", "beta",
            f"beta needs a go from qa for 1.0.0; qa said no-go on {no_go.created_at.date().isoformat()}: "
            "2 bugs (SHOP-1, SHOP-2)")
    shop.decided(release, "qa", "tess", "go", "fixed after all")
    assert shop.deploy("1.0.0", "beta").status_code == 202


def test_a_busy_environment_names_what_holds_it(shop):
    shop.release("1.0.0")
    shop.release("1.1.0")
    assert shop.deploy("1.0.0", "qa", "erin").status_code == 202
    refused(shop, 409, "1.1.0", "qa",
            "qa is busy: 1.0.0 is queued (asked by erin); wait for it or cancel it.", user="eli")


def test_lock_and_unlock_are_release_or_admin_only_audited_and_block_deploys(shop):
    shop.release("1.0.0")
    response = shop.post("/api/v1/projects/shop/environments/qa/lock", "erin",
                         {"locked": True, "reason": "database migration"})
    assert response.status_code == 403
    assert "Only a release manager or an admin may lock or unlock qa" in response.get_json()["detail"]
    response = shop.post("/api/v1/projects/shop/environments/qa/lock", "rita", {"locked": True})
    assert response.status_code == 400 and "give a reason" in response.get_json()["detail"]
    response = shop.post("/api/v1/projects/shop/environments/qa/lock", "rita",
                         {"locked": True, "reason": "database migration"})
    assert response.status_code == 200
    assert response.get_json()["environment"]["locked"] is True
    refused(shop, 409, "1.0.0", "qa", "qa is locked: database migration.")
    assert shop.post("/api/v1/projects/shop/environments/qa/lock", "ada",
                     {"locked": False}).status_code == 200
    assert shop.deploy("1.0.0", "qa").status_code == 202
    actions = db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.action.like("environment.%")).order_by(AuditEvent.id)).all()
    assert actions == ["environment.lock", "environment.unlock"]
    lock = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "environment.lock"))
    assert lock.actor == "rita" and lock.before == {"locked": False, "lock_reason": None}
    assert lock.after == {"locked": True, "lock_reason": "database migration"}


def test_a_freeze_lets_only_a_hotfix_with_a_reason_through_and_audits_it(shop):
    shop.release("1.0.0")
    shop.release("1.0.1", kind="hotfix")
    assert shop.post("/api/v1/projects/shop/environments/qa/freeze", "rita",
                     {"frozen": True, "reason": "end of quarter"}).status_code == 200
    refused(shop, 409, "1.0.0", "qa",
            "qa is frozen: end of quarter; only a hotfix may go through, with a reason "
            "(1.0.0 is a minor release).")
    refused(shop, 409, "1.0.1", "qa",
            "qa is frozen: end of quarter; give a reason to let hotfix 1.0.1 through the freeze.")
    response = shop.deploy("1.0.1", "qa", freeze_reason="payment outage SHOP-9")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["deployment"]["freeze_reason"] == "payment outage SHOP-9"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.request"))
    assert "freeze exception: payment outage SHOP-9" in event.detail
    assert event.after["freeze_exception"] is True


@pytest.mark.parametrize("user, env, phrase", [
    ("vic", "qa", "vic (viewer) may not deploy to qa: it takes engineer, release or admin."),
    ("quinn", "qa", "quinn (qa) may not deploy to qa: it takes engineer, release or admin."),
])
def test_a_role_that_may_not_deploy_gets_403_with_the_rule(shop, user, env, phrase):
    shop.release("1.0.0")
    refused(shop, 403, "1.0.0", env, phrase, user=user)


def test_an_engineer_may_not_deploy_to_prod(shop):
    release = shop.release("1.0.0")
    shop.deployed(release, "beta", "erin")
    shop.decided(release, "beta", "quinn", "go")
    refused(shop, 403, "1.0.0", "prod",
            "erin (engineer) may not deploy to prod: it takes release or admin.", user="erin")
    assert shop.deploy("1.0.0", "prod", "rita").status_code == 202


def test_prod_refuses_a_go_from_someone_who_deployed_the_release_to_beta(shop):
    release = shop.release("1.0.0", by="erin")
    shop.deployed(release, "beta", "rita")
    shop.decided(release, "beta", "rita", "go")
    refused(shop, 409, "1.0.0", "prod", "rita gave beta's go but deployed it to beta", user="ada")


def test_a_rollback_needs_a_reason_and_is_recorded_as_one(shop):
    old = shop.release("1.0.0")
    new = shop.release("1.1.0")
    shop.deployed(old, "qa")
    shop.deployed(new, "qa")
    refused(shop, 409, "1.0.0", "qa",
            "1.0.0 is older than 1.1.0, which runs in qa: deploying it is a rollback, so give a reason.")
    response = shop.deploy("1.0.0", "qa", rollback_reason="1.1.0 corrupts carts")
    assert response.status_code == 202
    deployment = response.get_json()["deployment"]
    assert deployment["rollback_reason"] == "1.1.0 corrupts carts"
    assert deployment["previous_version"] == "1.1.0"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.request"))
    assert event.after["rollback"] is True
    assert "rollback of qa from 1.1.0 to 1.0.0: 1.1.0 corrupts carts" in event.detail
    assert event.before == {"environment": "qa", "version": "1.1.0"}


def test_several_refusals_are_listed_together(shop):
    shop.release("1.0.0", state="pending")
    shop.release("0.9.0")
    shop.deploy("0.9.0", "qa")
    problem = refused(shop, 409, "1.0.0", "beta", user="vic")
    assert [r["code"] for r in problem["reasons"]] == ["not-tagged", "not-allowed", "needs-go"]


@pytest.mark.parametrize("path, status, phrase", [
    ("/api/v1/projects/shop/releases/1.0.0/deployments", 404, "Project shop has no environment 'staging'; it has: qa, beta, prod."),
    ("/api/v1/projects/shop/releases/9.9.9/deployments", 404, "Project shop has no release 9.9.9."),
    ("/api/v1/projects/nope/releases/1.0.0/deployments", 404, "There is no project 'nope'."),
    ("/api/v1/projects/shop/releases/banana/deployments", 400, "'banana' is not a version like 1.4.0."),
])
def test_unknown_things_get_a_sentence_and_nothing_is_written(shop, path, status, phrase):
    shop.release("1.0.0")
    before = counts()
    response = shop.post(path, "erin", {"environment": "staging" if "1.0.0" in path else "qa"})
    assert response.status_code == status
    assert phrase in response.get_json()["detail"]
    assert counts() == before


def test_a_deploy_writes_deployment_job_and_audit_in_one_go(shop):
    shop.release("1.0.0")
    response = shop.deploy("1.0.0", "qa")
    assert response.status_code == 202
    data = response.get_json()
    assert data["deployment"]["status"] == "queued"
    assert data["deployment"]["release"] == {"version": "1.0.0", "tag": "v1.0.0",
                                             "commit": data["deployment"]["release"]["commit"],
                                             "kind": "minor"}
    assert data["job"]["kind"] == "deploy" and data["job"]["status"] == "queued"
    deployment = db.session.get(Deployment, data["deployment"]["id"])
    assert deployment.job.payload == {"deployment_id": deployment.id}
    assert deployment.job.enqueued_at is not None  # handed to Redis after the commit
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "deploy.request"))
    assert event.actor == "erin" and event.target == f"deployment:{deployment.id}"
