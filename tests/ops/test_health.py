"""`/healthz` answers while the process runs, whatever else is down; `/readyz` answers 200 only
when the database and Redis answer and the schema is at the migrations' head, and otherwise a 503
problem+json whose one sentence names what failed. Both backends; no sign-in, no CSRF."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from relapp.extensions import db
from relapp.services.health import script_heads
from tests.conftest import free_port
from tests.faults.conftest import PrivateRedis, use_redis


def test_healthz_answers_without_sign_in_and_echoes_a_request_id(app: Any) -> None:
    client = app.test_client()
    response = client.get("/healthz", headers={"X-Request-ID": "lb-probe-7"})
    assert response.status_code == 200
    assert response.get_json() == {"status": "alive"}
    assert response.headers["X-Request-ID"] == "lb-probe-7"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers  # no session is made for a probe


def test_healthz_touches_neither_the_database_nor_redis(tmp_path: Path) -> None:
    # Both point at closed ports: /healthz is still 200, /readyz names both in one sentence.
    from relapp import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "INSTANCE_PATH": str(tmp_path),
                      "SQLALCHEMY_DATABASE_URI": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
                      "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["detail"] == ("Not ready: the database cannot be reached (OperationalError) and "
                              "Redis cannot be reached (ConnectionError).")
    assert body["checks"] == {"database": "the database cannot be reached (OperationalError)",
                              "redis": "Redis cannot be reached (ConnectionError)",
                              "migrations": "the schema version was not read"}


def test_readyz_is_ready_on_a_migrated_database(app: Any) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ready",
                                   "checks": {"database": "ok", "redis": "ok", "migrations": "ok"}}


def test_readyz_fails_when_redis_goes_away(app: Any, private_redis: Callable[..., PrivateRedis]) -> None:
    server = private_redis()
    use_redis(app, server.url)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    server.stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["detail"] == "Not ready: Redis cannot be reached (ConnectionError)."
    assert body["checks"] == {"database": "ok", "redis": "Redis cannot be reached (ConnectionError)",
                              "migrations": "ok"}
    assert client.get("/healthz").status_code == 200
    server.start()
    assert client.get("/readyz").status_code == 200


def test_readyz_fails_when_the_database_is_behind_its_migrations(app_ctx: Any) -> None:
    from alembic.script import ScriptDirectory

    head = script_heads()[0]
    previous = ScriptDirectory(app_ctx.extensions["migrate"].directory).get_revision(head).down_revision
    assert isinstance(previous, str)
    db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
    db.session.commit()
    try:
        response = app_ctx.test_client().get("/readyz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["detail"] == (f"Not ready: the database is at {previous}, not at the migrations' "
                                  f"head {head}; run `flask --app relapp db upgrade`.")
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    finally:  # the worker's PostgreSQL database keeps its schema version between tests
        db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        db.session.commit()
    assert app_ctx.test_client().get("/readyz").status_code == 200


def test_probes_are_get_only_and_never_rate_limited(app: Any) -> None:
    client = app.test_client()
    assert all(client.get("/healthz").status_code == 200 for _ in range(40))
    assert client.post("/healthz").status_code == 405  # a refusal, not a CSRF error nor a 500
