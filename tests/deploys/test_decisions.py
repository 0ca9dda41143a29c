"""Go / no-go through the API: the rules' sentences, separation of duties, audit."""

from __future__ import annotations

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import AuditEvent, Decision

from .conftest import counts


def test_a_no_go_needs_a_comment(shop):
    release = shop.release("1.0.0")
    shop.deployed(release, "qa")
    before = counts()
    response = shop.decide("1.0.0", "qa", "quinn", "no-go", "  ")
    assert response.status_code == 400
    assert response.get_json()["detail"] == "a no-go needs a comment saying why."
    assert counts() == before


def test_bug_keys_must_match_the_project_pattern(shop):
    release = shop.release("1.0.0")
    shop.deployed(release, "qa")
    before = counts()
    response = shop.decide("1.0.0", "qa", "quinn", "no-go", "broken", ["SHOP-1", "abc-1; drop"])
    assert response.status_code == 400
    assert "'abc-1; drop' is not an issue key: keys must match 'SHOP-\\\\d+'" in response.get_json()["detail"]
    assert counts() == before


def test_a_decision_needs_the_release_to_run_there(shop):
    old = shop.release("1.0.0")
    shop.release("1.1.0")
    before = counts()
    response = shop.decide("1.1.0", "qa", "quinn", "go")
    assert response.status_code == 409
    assert response.get_json()["detail"] == (
        "1.1.0 is not deployed in qa: deploy 1.1.0 to qa before deciding on it there.")
    shop.deployed(old, "qa")
    before = counts()
    response = shop.decide("1.1.0", "qa", "quinn", "go")
    assert response.status_code == 409
    assert "qa runs 1.0.0, not 1.1.0" in response.get_json()["detail"]
    assert counts() == before


def test_a_role_without_decide_rights_gets_403(shop):
    release = shop.release("1.0.0")
    shop.deployed(release, "qa")
    response = shop.decide("1.0.0", "qa", "erin", "go")
    assert response.status_code == 403
    assert "erin (engineer) may not decide on releases in qa: it takes qa, release or admin" in \
        response.get_json()["detail"]


def test_separation_of_duties_blocks_a_go_from_the_deployer_but_not_a_no_go(shop):
    release = shop.release("1.0.0", by="erin")
    shop.deployed(release, "prod", by="rita")
    response = shop.decide("1.0.0", "prod", "rita", "go")
    assert response.status_code == 409
    assert ("prod separates duties: rita deployed it to prod, so someone else must give its go"
            in response.get_json()["detail"])
    assert shop.decide("1.0.0", "prod", "rita", "no-go", "smoke test red").status_code == 201
    assert shop.decide("1.0.0", "prod", "quinn", "go", "all green").status_code == 201


def test_a_decision_is_recorded_with_links_and_audited_and_the_latest_counts(shop):
    release = shop.release("1.0.0")
    shop.deployed(release, "qa")
    response = shop.decide("1.0.0", "qa", "quinn", "no-go", "checkout broken", ["SHOP-12", "SHOP-12 "])
    assert response.status_code == 201
    decision = response.get_json()["decision"]
    assert decision["bugs"] == [{"key": "SHOP-12", "url": "https://jira.example.com/browse/SHOP-12"}]
    assert decision["by"] == "quinn" and decision["decision"] == "no-go"
    assert shop.decide("1.0.0", "qa", "tess", "go", "fixed in config").status_code == 201
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "decision.record")
                                .order_by(AuditEvent.id)).all()
    assert [e.actor for e in events] == ["quinn", "tess"]
    assert events[1].before == {"environment": "qa", "decision": "no-go", "by": "quinn"}
    assert events[1].after["decision"] == "go"
    assert db.session.scalar(select(Decision).order_by(Decision.id.desc())).decision == "go"
    # The latest decision counts: beta may now take 1.0.0.
    assert shop.deploy("1.0.0", "beta").status_code == 202


def test_a_hotfix_needs_its_own_go(shop):
    base = shop.release("1.0.0")
    shop.deployed(base, "qa")
    shop.decided(base, "qa", "quinn", "go")
    hotfix = shop.release("1.0.1", kind="hotfix")
    shop.deployed(hotfix, "qa")
    response = shop.deploy("1.0.1", "beta")
    assert response.status_code == 409
    assert "beta needs a go from qa for 1.0.1; qa has not decided yet" in response.get_json()["detail"]


def test_separation_of_duties_the_go_giver_does_not_deploy_on_their_own_go(shop):
    """The finding (issue 9, 7): with separation of duties on prod, the person who gave the go
    prod relies on (beta's) could deploy to prod. Nobody may, an admin included."""
    release = shop.release("1.3.0", by="erin")
    shop.deployed(release, "qa", by="erin")
    shop.decided(release, "qa", "quinn", "go")
    shop.deployed(release, "beta", by="eli")
    assert shop.decide("1.3.0", "beta", "rita", "go", "beta smoke green").status_code == 201

    before = counts()
    response = shop.deploy("1.3.0", "prod", "rita")
    assert response.status_code == 409
    body = response.get_json()
    assert body["detail"] == "rita gave beta's go on 1.3.0, so someone else must deploy it to prod."
    assert [r["code"] for r in body["reasons"]] == ["go-giver-deploys"]
    assert counts() == before

    # An admin is no exception: ada's go replaces rita's, and binds ada in turn.
    assert shop.decide("1.3.0", "beta", "ada", "go", "checked again").status_code == 201
    before = counts()
    response = shop.deploy("1.3.0", "prod", "ada")
    assert response.status_code == 409
    assert "ada gave beta's go on 1.3.0, so someone else must deploy it to prod" in \
        response.get_json()["detail"]
    assert counts() == before
    # Someone else ships it: rita's go no longer counts, ada's does.
    assert shop.deploy("1.3.0", "prod", "rita").status_code == 202


def test_separation_of_duties_a_go_needs_someone_who_neither_cut_nor_deployed_it_there(shop):
    """A go on prod is refused from its cutter and from whoever deployed it to prod (admins
    too); the deployer of another environment may give it."""
    release = shop.release("1.4.0", by="ada")
    shop.deployed(release, "beta", by="rita")
    shop.deployed(release, "prod", by="eli")
    refused = shop.decide("1.4.0", "prod", "ada", "go")
    assert refused.status_code == 409
    assert "prod separates duties: ada cut 1.4.0, so someone else must give its go" in \
        refused.get_json()["detail"]
    shop.deployed(release, "prod", by="quinn")  # a redeploy: quinn deployed it there too
    refused = shop.decide("1.4.0", "prod", "quinn", "go")
    assert refused.status_code == 409
    assert "quinn deployed it to prod" in refused.get_json()["detail"]
    assert shop.decide("1.4.0", "prod", "rita", "go", "rita only deployed it to beta").status_code == 201
