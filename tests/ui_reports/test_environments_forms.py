"""Lock and freeze from the environments page: release managers only, with a reason, audited."""

from __future__ import annotations

from sqlalchemy import func, select

from relapp.extensions import db
from relapp.models import AuditEvent, Environment
from tests.conftest import csrf_token

from .conftest import signed_in


def env(name: str) -> Environment:
    db.session.expire_all()
    return db.session.scalar(select(Environment).where(Environment.name == name))


def audit_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def test_a_viewer_gets_403_and_nothing_changes(app, history):
    client = signed_in(app, "vic")
    token = csrf_token(client, "/environments")
    before = audit_count()
    for what, action in (("lock", "lock"), ("freeze", "freeze")):
        response = client.post(f"/environments/demo/prod/{what}",
                                data={"csrf_token": token, "action": action, "reason": "no"})
        assert response.status_code == 403
    assert (env("prod").locked, env("prod").frozen) == (False, False)
    assert audit_count() == before


def test_an_engineer_gets_403_too(app, history):
    client = signed_in(app, "erin")
    response = client.post("/environments/demo/prod/lock",
                           data={"csrf_token": csrf_token(client, "/environments"), "action": "lock", "reason": "x"})
    assert response.status_code == 403 and env("prod").locked is False


def test_a_release_manager_locks_with_a_reason_and_it_is_audited(app, history):
    client = signed_in(app, "rita")
    page = client.get("/environments").get_data(as_text=True)
    assert 'action="/environments/demo/prod/lock"' in page
    response = client.post("/environments/demo/prod/lock", data={
        "csrf_token": csrf_token(client, "/environments"), "action": "lock", "reason": "Incident INC-7 in progress"})
    assert response.status_code == 303
    prod = env("prod")
    assert prod.locked and prod.lock_reason == "Incident INC-7 in progress"
    event = db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()))
    assert (event.action, event.actor, event.target) == ("environment.lock", "rita", "environment:demo/prod")
    assert event.after == {"locked": True, "lock_reason": "Incident INC-7 in progress"}
    page = client.get("/environments").get_data(as_text=True)
    assert "Locked: Incident INC-7 in progress" in page and "Unlock prod" in page
    response = client.post("/environments/demo/prod/lock",
                           data={"csrf_token": csrf_token(client, "/environments"), "action": "unlock"})
    assert response.status_code == 303 and env("prod").locked is False and env("prod").lock_reason is None


def test_a_lock_needs_a_reason(app, history):
    client = signed_in(app, "rita")
    before = audit_count()
    response = client.post("/environments/demo/beta/lock",
                           data={"csrf_token": csrf_token(client, "/environments"), "action": "lock", "reason": "  "})
    assert response.status_code == 400
    assert "give a reason" in response.get_data(as_text=True)
    assert env("beta").locked is False and audit_count() == before


def test_freeze_over_htmx_answers_with_the_card(app, history):
    client = signed_in(app, "ada")
    response = client.post("/environments/demo/prod/freeze", headers={
        "HX-Request": "true", "X-CSRFToken": csrf_token(client, "/environments")},
        data={"action": "freeze", "reason": "Quarter-end <b>freeze</b>"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<article class="env-card is-frozen" id="env-prod"')
    assert "Frozen: Quarter-end &lt;b&gt;freeze&lt;/b&gt;" in html
    assert response.headers["HX-Trigger"] == "environments-changed"
    assert env("prod").frozen and env("prod").freeze_reason == "Quarter-end <b>freeze</b>"
    event = db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()))
    assert event.action == "environment.freeze" and event.actor == "ada"


def test_csrf_missing_is_400_and_nothing_changes(app, history):
    client = signed_in(app, "rita")
    before = audit_count()
    response = client.post("/environments/demo/prod/lock", data={"action": "lock", "reason": "x"})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert env("prod").locked is False and audit_count() == before


def test_an_unknown_action_or_environment_is_refused(app, history):
    client = signed_in(app, "rita")
    token = csrf_token(client, "/environments")
    assert client.post("/environments/demo/prod/lock", data={"csrf_token": token, "action": "explode"}).status_code == 400
    response = client.post("/environments/demo/staging/lock", data={"csrf_token": token, "action": "lock", "reason": "x"})
    assert response.status_code == 404 and "has no environment &#39;staging&#39;" in response.get_data(as_text=True)
