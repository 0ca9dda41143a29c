"""The Me page: API tokens shown once, stored hashed, revocable; admins see the users."""

from __future__ import annotations

import re

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import ApiToken, AuditEvent, User
from relapp.security import token_hash
from tests.conftest import csrf_token

from .conftest import signed_in


def token_of(username: str) -> ApiToken:
    """The API token the fixture gave this user."""
    user = db.session.scalar(select(User).where(User.username == username))
    return db.session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))


def revoke(client, row: ApiToken):
    """Revoke the token through the Me page's form, as the client's user."""
    return client.post(f"/me/tokens/{row.id}/revoke", data={"csrf_token": csrf_token(client, "/me")})


def test_me_shows_name_role_and_tokens(app, history):
    html = signed_in(app, "erin").get("/me").get_data(as_text=True)
    assert "Erin" in html and '<span class="badge role">engineer</span>' in html
    assert html.count('<tr id="token-') == 1  # the fixture's token
    assert 'id="users"' not in html


def test_admins_see_the_users_list(app, history):
    html = signed_in(app, "ada").get("/me").get_data(as_text=True)
    users = re.search(r'id="users".*?</table>', html, re.DOTALL).group(0)
    for name in ("vic", "quinn", "erin", "rita", "ada"):
        assert f"<td>{name}</td>" in users


def test_a_new_token_is_shown_once_and_stored_hashed(app, history):
    client = signed_in(app, "erin")
    response = client.post("/me/tokens", data={"csrf_token": csrf_token(client, "/me"), "name": "CI <b>"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    token = re.search(r'<pre class="token"><code>(rla_[A-Za-z0-9_-]+)</code></pre>', html).group(1)
    assert "CI &lt;b&gt;" in html
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "CI <b>"))
    assert row.token_hash == token_hash(token) and token not in (row.token_hash, row.prefix)
    assert token.startswith(row.prefix)
    # Never again: the next page view only shows its prefix.
    again = client.get("/me").get_data(as_text=True)
    assert token not in again and f"{row.prefix}…" in again
    # And it works for the API.
    assert client.get("/api/v1/projects/demo/environments",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_token_needs_a_name_and_a_csrf_token(app, history):
    client = signed_in(app, "erin")
    count = db.session.query(ApiToken).count()
    assert client.post("/me/tokens", data={"csrf_token": csrf_token(client, "/me"), "name": " "}).status_code == 400
    assert client.post("/me/tokens", data={"name": "CI"}).status_code == 400
    assert db.session.query(ApiToken).count() == count


def test_a_revoked_token_no_longer_authenticates_the_api(app, history):
    token = history.demo.tokens["erin"]
    api = app.test_client()
    url = "/api/v1/projects/demo/environments"
    assert api.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    row = token_of("erin")
    client = signed_in(app, "erin")
    assert revoke(client, row).status_code == 303
    db.session.expire_all()
    assert row.revoked_at is not None
    assert api.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "token.revoke"))
    assert event.actor == "erin" and event.after["revoked"] is True
    assert "revoked" in client.get("/me").get_data(as_text=True)


def test_nobody_revokes_someone_elses_token(app, history):
    row = token_of("rita")
    assert revoke(signed_in(app, "erin"), row).status_code == 404
    db.session.expire_all()
    assert row.revoked_at is None
    assert app.test_client().get("/api/v1/projects/demo/environments",
                                 headers={"Authorization": f"Bearer {history.demo.tokens['rita']}"}).status_code == 200


def test_revoking_needs_csrf(app, history):
    row = token_of("erin")
    assert signed_in(app, "erin").post(f"/me/tokens/{row.id}/revoke").status_code == 400
    db.session.expire_all()
    assert row.revoked_at is None
