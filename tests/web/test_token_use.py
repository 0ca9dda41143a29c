"""An API token's last use is bookkeeping: written at most once a minute, in a short write
transaction of its own, and never the reason a read fails (issue 9, finding 1)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, select, text, update
from sqlalchemy.pool import NullPool

from relapp.extensions import db
from relapp.models import ApiToken, utcnow
from relapp.services.accounts import TOKEN_USE_RESOLUTION, create_token, create_user


def _last_used(token_id: int) -> Any:
    db.session.rollback()
    return db.session.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))


def _set_last_used(token_id: int, value: Any) -> None:
    db.session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=value))
    db.session.commit()


def _token(name: str = "tess") -> tuple[int, dict[str, str]]:
    create_user(name, "pass", "viewer")
    row, token = create_token(name, "CI")
    return row.id, {"Authorization": f"Bearer {token}"}


def test_last_use_is_written_at_most_once_a_minute(app):
    token_id, headers = _token()
    client = app.test_client()
    assert _last_used(token_id) is None

    before = utcnow()
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    first = _last_used(token_id)
    assert first is not None and before <= first <= utcnow()

    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    assert _last_used(token_id) == first  # within the minute: not written again

    # The recorded use is now older than a minute: the next request records it anew.
    stale = first - TOKEN_USE_RESOLUTION - timedelta(seconds=5)
    _set_last_used(token_id, stale)
    before = utcnow()
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    second = _last_used(token_id)
    assert second != stale and before <= second <= utcnow()


def test_a_held_lock_skips_the_bookkeeping_not_the_request(app, backend):
    """While another writer holds the lock the write needs, an API read still answers 200; the
    use is recorded by the next request once the lock is free."""
    token_id, headers = _token()
    client = app.test_client()
    if backend["database"].startswith("sqlite"):
        holder: Any = sqlite3.connect(backend["database"][len("sqlite:///"):], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # SQLite's one write lock
        release = holder.rollback
    else:
        engine = create_engine(db.engine.url, poolclass=NullPool)
        holder = engine.connect()
        holder.execute(text("SELECT id FROM api_tokens WHERE id = :id FOR UPDATE"), {"id": token_id})
        release = holder.rollback
    try:
        assert client.get("/api/v1/projects", headers=headers).status_code == 200
    finally:
        release()
        holder.close()
    assert _last_used(token_id) is None
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    assert _last_used(token_id) is not None
