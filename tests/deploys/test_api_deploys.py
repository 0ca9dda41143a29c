"""The deploy API's reads and its contract: environments, deployments, jobs, audit, OpenAPI,
Idempotency-Key."""

from __future__ import annotations

from sqlalchemy import func, select

from relapp.extensions import db
from relapp.models import Deployment


def test_environments_show_what_runs_where_who_put_it_there_and_what_holds_them(shop):
    old = shop.release("1.0.0")
    shop.release("1.1.0")
    shop.deployed(old, "qa", by="eli")
    shop.post("/api/v1/projects/shop/environments/beta/freeze", "rita",
              {"frozen": True, "reason": "release week"})
    assert shop.deploy("1.1.0", "qa").status_code == 202
    data = shop.get("/api/v1/projects/shop/environments").get_json()
    qa, beta, prod = data["environments"]
    assert [e["name"] for e in data["environments"]] == ["qa", "beta", "prod"]
    assert qa["current"]["version"] == "1.0.0" and qa["current"]["deployed_by"] == "eli"
    assert qa["current"]["deployed_at"]
    assert qa["active_deployment"]["release"]["version"] == "1.1.0"
    assert qa["active_deployment"]["status"] == "queued"
    assert beta["current"] is None and beta["frozen"] is True
    assert beta["freeze_reason"] == "release week" and beta["requires_go_from"] == "qa"
    assert prod["separation_of_duties"] is True and prod["deploy_roles"] == ["release", "admin"]
    assert {"observed_version", "observed_at", "version_url", "locked", "lock_reason"} <= set(qa)
    assert shop.get("/api/v1/projects/nope/environments").status_code == 404


def test_a_deployment_reads_back_and_unknown_ids_are_404(shop):
    shop.release("1.0.0")
    deployment_id = shop.deploy("1.0.0", "qa").get_json()["deployment"]["id"]
    data = shop.get(f"/api/v1/deployments/{deployment_id}").get_json()["deployment"]
    assert data["status"] == "queued" and data["environment"] == "qa" and data["project"] == "shop"
    assert data["job"]["url"] == f"/api/v1/jobs/{data['job']['id']}"
    missing = shop.get("/api/v1/deployments/9999")
    assert missing.status_code == 404 and missing.get_json()["detail"] == "There is no deployment 9999."
    assert shop.client.get(f"/api/v1/deployments/{deployment_id}").status_code == 401


def test_an_idempotency_key_replays_the_first_answer_and_deploys_once(shop):
    shop.release("1.0.0")
    key = {"Idempotency-Key": "ci-run-42"}
    path = "/api/v1/projects/shop/releases/1.0.0/deployments"
    one = shop.post(path, "erin", {"environment": "qa"}, **key)
    two = shop.post(path, "erin", {"environment": "qa"}, **key)
    assert one.status_code == two.status_code == 202
    assert one.get_json() == two.get_json()
    assert two.headers.get("Idempotent-Replayed") == "true"
    other = shop.post(path, "erin", {"environment": "beta"}, **key)
    assert other.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 1


def test_bad_bodies_get_a_sentence(shop):
    shop.release("1.0.0")
    response = shop.client.post("/api/v1/projects/shop/releases/1.0.0/deployments", data="nope",
                                headers=shop.headers("erin"))
    assert response.status_code == 400
    assert "Send a JSON object" in response.get_json()["detail"]
    response = shop.post("/api/v1/projects/shop/releases/1.0.0/deployments", "erin", {})
    assert response.get_json()["detail"] == "The field 'environment' is required."
    response = shop.post("/api/v1/projects/shop/releases/1.0.0/decisions", "quinn",
                         {"environment": "qa", "decision": "go", "bugs": "SHOP-1"})
    assert response.status_code == 400 and "'bugs' has the wrong type" in response.get_json()["detail"]
    response = shop.get("/api/v1/audit?limit=lots")
    assert response.status_code == 400


def test_audit_is_newest_first_filtered_and_paged(shop):
    shop.release("1.0.0")
    shop.release("1.1.0")
    shop.deploy("1.0.0", "qa")
    for reason in ("a", "b", "c"):
        shop.post("/api/v1/projects/shop/environments/prod/lock", "rita",
                  {"locked": True, "reason": f"lock {reason}"})
    events = shop.get("/api/v1/audit?project=shop").get_json()["events"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)
    assert events[0]["action"] == "environment.lock" and events[0]["project"] == "shop"
    assert events[0]["after"] == {"locked": True, "lock_reason": "lock c"}
    assert events[0]["before"] == {"locked": True, "lock_reason": "lock b"}

    page = shop.get("/api/v1/audit?action=environment.lock&limit=2").get_json()
    assert [e["detail"] for e in page["events"]] == ["lock c", "lock b"]
    assert page["next"] is not None
    rest = shop.get(page["next"]).get_json()
    assert [e["detail"] for e in rest["events"]] == ["lock a"] and rest["next"] is None

    deploys = shop.get("/api/v1/audit?action=deploy.*").get_json()["events"]
    assert [e["action"] for e in deploys] == ["deploy.request"]
    by_rita = shop.get("/api/v1/audit?actor=rita").get_json()["events"]
    assert {e["actor"] for e in by_rita} == {"rita"} and len(by_rita) == 3
    newest = ids[0]
    assert shop.get(f"/api/v1/audit?since_id={newest}").get_json()["events"] == []
    assert len(shop.get("/api/v1/audit?limit=100000").get_json()["events"]) <= 200


def test_the_openapi_document_lists_the_deploy_paths(shop):
    paths = shop.client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in [
        ("/api/v1/projects/{project}/environments", "get"),
        ("/api/v1/projects/{project}/releases/{version}/deployments", "post"),
        ("/api/v1/projects/{project}/releases/{version}/decisions", "post"),
        ("/api/v1/projects/{project}/environments/{environment}/lock", "post"),
        ("/api/v1/projects/{project}/environments/{environment}/freeze", "post"),
        ("/api/v1/deployments/{id}", "get"),
        ("/api/v1/deployments/{id}/status", "post"),
        ("/api/v1/deployments/{id}/cancel", "post"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}/stream", "get"),
        ("/api/v1/audit", "get"),
    ]:
        assert method in paths[path], path
