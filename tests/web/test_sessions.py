"""Sessions that end (issue 9, finding 4): a per-user session version, rotated on sign-out, on a
password change and by "sign out everywhere", makes every earlier session and remember cookie
worthless, whatever a browser kept. Real cookies through the test client."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import AuditEvent, User
from relapp.services.accounts import create_user
from tests.conftest import csrf_token, login

SESSION = "session"
REMEMBER = "remember_token"


def _client_with(app: Any, **cookies: str) -> Any:
    """A fresh browser holding only these (captured) cookies."""
    client = app.test_client()
    for name, value in cookies.items():
        client.set_cookie(name, value)
    return client


def _remembered_login(app: Any, name: str, password: str = "pass") -> Any:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": name, "password": password,
                                           "remember": "y", "csrf_token": token})
    assert response.status_code == 302
    assert client.get_cookie(REMEMBER) is not None
    return client


def _signed_in(client: Any) -> bool:
    response = client.get("/me")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    return False


def test_a_session_cookie_captured_before_sign_out_no_longer_signs_in_nor_acts(app):
    create_user("sam", "pass", "engineer")
    browser = app.test_client()
    assert login(browser, "sam").status_code == 302
    token = csrf_token(browser, "/me")
    captured = browser.get_cookie(SESSION).value
    assert _signed_in(_client_with(app, session=captured))  # the copy works while signed in

    assert browser.post("/logout", headers={"X-CSRFToken": token}).status_code == 302
    assert not _signed_in(browser)

    thief = _client_with(app, session=captured)
    assert not _signed_in(thief)
    response = thief.post("/me/tokens", data={"name": "stolen", "csrf_token": token})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    db.session.rollback()
    user = db.session.scalar(select(User).where(User.username == "sam"))
    assert user.tokens == []


def test_sign_out_everywhere_ends_remember_cookies_and_other_browsers(app):
    create_user("sam", "pass", "engineer")
    laptop = _remembered_login(app, "sam")
    phone = _remembered_login(app, "sam")
    remembered = laptop.get_cookie(REMEMBER).value
    # The remember cookie alone signs a new browser in (the session cookie is gone).
    assert _signed_in(_client_with(app, remember_token=remembered))

    token = csrf_token(phone, "/me")
    assert 'id="sign-out-everywhere"' in phone.get("/me").get_data(as_text=True)
    response = phone.post("/me/sessions/end", data={"csrf_token": token})
    assert response.status_code == 303 and "/login" in response.headers["Location"]

    assert not _signed_in(phone)
    assert not _signed_in(laptop)
    assert not _signed_in(_client_with(app, remember_token=remembered))
    db.session.rollback()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.sessions.end"))
    assert event is not None and event.actor == "sam" and event.detail == "signed out everywhere"


def test_sign_out_everywhere_needs_the_csrf_token(app):
    create_user("sam", "pass", "engineer")
    browser = app.test_client()
    assert login(browser, "sam").status_code == 302
    assert browser.post("/me/sessions/end").status_code == 400
    assert _signed_in(browser)


def test_two_sign_ins_get_different_remember_cookies_and_sign_out_ends_the_other(app):
    create_user("sam", "pass", "engineer")
    first = _remembered_login(app, "sam")
    second = _remembered_login(app, "sam")
    first_cookie, second_cookie = first.get_cookie(REMEMBER).value, second.get_cookie(REMEMBER).value
    assert first_cookie != second_cookie
    # Signing out in one browser ends the session on the server: the other's remember cookie,
    # replayed anywhere, no longer signs in.
    assert second.post("/logout", headers={"X-CSRFToken": csrf_token(second, "/me")}).status_code == 302
    assert not _signed_in(_client_with(app, remember_token=first_cookie))
    assert not _signed_in(first)
    third = _remembered_login(app, "sam")
    assert third.get_cookie(REMEMBER).value not in (first_cookie, second_cookie)


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app):
    create_user("sam", "pass", "engineer")
    other = _remembered_login(app, "sam")
    other_remember = other.get_cookie(REMEMBER).value
    here = _remembered_login(app, "sam")

    token = csrf_token(here, "/me")
    wrong = here.post("/me/password", data={"current_password": "nope", "new_password": "s3cret",
                                            "confirm_password": "s3cret", "csrf_token": token})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.get_data(as_text=True)
    assert _signed_in(other)  # a refused change ends nothing

    response = here.post("/me/password", data={"current_password": "pass", "new_password": "s3cret",
                                               "confirm_password": "s3cret", "csrf_token": token})
    assert response.status_code == 303
    assert _signed_in(here)
    assert not _signed_in(other)
    assert not _signed_in(_client_with(app, remember_token=other_remember))
    assert login(app.test_client(), "sam", "pass").status_code == 401
    assert login(app.test_client(), "sam", "s3cret").status_code == 302
    db.session.rollback()
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.target == "user:sam")).all()
    assert "user.password.change" in actions


def test_the_cli_password_reset_ends_every_session(app):
    create_user("sam", "pass", "engineer")
    browser = _remembered_login(app, "sam")
    remembered = browser.get_cookie(REMEMBER).value
    result = app.test_cli_runner().invoke(args=["users", "set-password", "sam", "--password", "n3w-pass"])
    assert result.exit_code == 0, result.output
    assert not _signed_in(browser)
    assert not _signed_in(_client_with(app, remember_token=remembered))
    missing = app.test_cli_runner().invoke(args=["users", "set-password", "nobody", "--password", "xxxx"])
    assert missing.exit_code == 1 and "no user named 'nobody'" in missing.output


def test_an_admin_signs_a_user_out_everywhere_from_the_cli(app):
    create_user("sam", "pass", "engineer")
    create_user("kim", "pass", "engineer")
    sam = _remembered_login(app, "sam")
    kim = _remembered_login(app, "kim")
    remembered = sam.get_cookie(REMEMBER).value
    result = app.test_cli_runner().invoke(args=["users", "sign-out", "sam"])
    assert result.exit_code == 0 and "Every session of sam is signed out." in result.output
    assert not _signed_in(sam)
    assert not _signed_in(_client_with(app, remember_token=remembered))
    assert _signed_in(kim)  # only sam's sessions end
    missing = app.test_cli_runner().invoke(args=["users", "sign-out", "nobody"])
    assert missing.exit_code == 1 and "no user named 'nobody'" in missing.output
    db.session.rollback()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.sessions.end"))
    assert event.actor == "cli" and event.target == "user:sam"
