"""Every database connection of a web process busy for the pool's whole timeout is an overload:
the request gets a 503 problem+json with Retry-After and one sentence, never a 500."""

from __future__ import annotations

from pathlib import Path

from relapp import create_app
from relapp.extensions import db
from relapp.services.accounts import create_token, create_user
from tests.conftest import signed_in


def test_an_exhausted_connection_pool_is_a_busy_503_not_a_500(backend: dict[str, str],
                                                             tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": backend["database"], "REDIS_URL": backend["redis"],
        "RELAPP_REPOS_DIR": str(tmp_path / "repos"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2},
    })
    with app.app_context():
        create_user("sam", "pass", "viewer")
        token = create_token("sam")[1]
        db.session.commit()
        db.session.remove()
        engine = db.engine
    client = signed_in(app, "sam")  # requests run outside the set-up's app context
    held = engine.connect()  # the pool's only connection, taken by "another request"
    try:
        page = client.get("/environments")
        api = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    finally:
        held.close()
    sentence = "The server is busy right now; nothing was changed. Try again in a few seconds."
    for answer in (page, api):
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.headers["Retry-After"] == "5"
    assert api.mimetype == "application/problem+json" and api.get_json()["detail"] == sentence
    # The page says it without reading the user it could not load: no traceback, no 500.
    assert page.mimetype == "text/html" and sentence in page.get_data(as_text=True)
    assert client.get("/environments").status_code == 200  # and it serves again
    engine.dispose()
