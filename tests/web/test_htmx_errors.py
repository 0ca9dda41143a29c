"""Errors asked for by htmx come back as a fragment for the page's alert area, with htmx-flask's
response headers; a stale form's missing CSRF token reloads the page."""

from __future__ import annotations

from tests.conftest import signed_in
from tests.web.test_foundation import people  # noqa: F401 - the fixture


def test_an_htmx_post_without_its_security_token_asks_for_a_reload(app, people):  # noqa: F811
    client = signed_in(app, "ada")
    response = client.post("/logout", headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert response.headers["HX-Refresh"] == "true"
    assert response.headers["HX-Retarget"] == "#alerts" and response.headers["HX-Reswap"] == "innerHTML"
    assert "security token" in response.get_data(as_text=True)
    assert "<html" not in response.get_data(as_text=True)  # a fragment, not a page
    assert client.get("/").status_code == 200  # still signed in: nothing changed


def test_an_htmx_error_that_is_not_about_the_token_does_not_reload(app, people):  # noqa: F811
    client = signed_in(app, "vic")
    response = client.get("/no/such/page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "#alerts"
    assert "HX-Refresh" not in response.headers
