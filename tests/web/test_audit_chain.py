"""Audit you can prove: every audit event carries the hash of the one before it, one chain per
installation extended by one transaction at a time, and `flask --app relapp audit verify` names
the first broken link. The database refuses UPDATE and DELETE (SQLite triggers, a PostgreSQL
trigger); an edit made behind its back (trigger dropped or disabled) is found by verify."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from relapp.domain.auditchain import GENESIS, event_hash
from relapp.extensions import db, write_transaction
from relapp.models import AuditEvent
from relapp.services import audit
from tests.conftest import work_queue

COLUMNS = ("id", "prev_hash", "hash", "at", "actor_id", "actor", "action", "project_id", "target",
           "before", "after", "detail")


def _verify(app: Any) -> tuple[int, str]:
    """`flask --app relapp audit verify`: exit status and output."""
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    return result.exit_code, result.output


def _stored(backend: dict[str, str]) -> list[dict[str, Any]]:
    """Every event as the database holds it, read on a connection of its own."""
    engine = create_engine(backend["database"], poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(
                select(*(getattr(AuditEvent, c) for c in COLUMNS)).order_by(AuditEvent.id)).mappings()]
    finally:
        engine.dispose()


def _behind_relapps_back(backend: dict[str, str], statement: str) -> None:
    """Change audit_events as someone with the database file (SQLite) or a superuser's session
    (PostgreSQL) could: lift the append-only guard, run `statement`, put the guard back."""
    if backend["database"].startswith("sqlite"):
        conn = sqlite3.connect(make_url(backend["database"]).database)
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        conn.execute(statement)
        conn.commit()
        conn.close()
        return
    engine = create_engine(backend["database"], poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        conn.execute(text(statement))
        conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
    engine.dispose()


def test_real_actions_form_a_chain_that_verifies(app, demo_project, backend):
    client = app.test_client()

    def call(path: str, user: str, body: dict[str, Any]) -> Any:
        response = client.post(path, json=body, headers=demo_project.headers(user))
        db.session.commit()
        work_queue()
        return response

    cut = call("/api/v1/projects/demo/releases", "erin", {})
    assert cut.status_code == 202, cut.get_json()
    version = cut.get_json()["version"]
    deployed = call(f"/api/v1/projects/demo/releases/{version}/deployments", "erin", {"environment": "qa"})
    assert deployed.status_code == 202, deployed.get_json()
    decided = call(f"/api/v1/projects/demo/releases/{version}/decisions", "quinn",
                   {"environment": "qa", "decision": "go", "comment": "fine on qa ✓"})
    assert decided.status_code == 201, decided.get_json()

    rows = _stored(backend)
    actions = {row["action"] for row in rows}
    assert {"user.create", "release.cut", "deploy.request", "deploy.start", "deploy.finish",
            "decision.record"} <= actions, actions
    previous = GENESIS
    for row in rows:  # each event follows the one before it and its hash is its stored fields'
        assert row["prev_hash"] == previous and row["hash"] == event_hash(previous, row)
        previous = row["hash"]
    status, output = _verify(app)
    assert status == 0 and output.startswith(f"The audit chain of {len(rows)} events is intact.\n"), output
    assert f"Last event {rows[-1]['id']}, hash {rows[-1]['hash']}" in output


def test_stored_fields_give_back_the_hash_they_were_recorded_with(app, backend):
    nested = {"env": "prod", "steps": [1, 2.5, {"ok": True, "none": None}], "ünïcødé": "Grüße, 世界 🚀",
              "tuple": ("a", 1), 7: "int key", "quote": 'he said "no"\n\tand left'}
    paris = timezone(timedelta(hours=2))
    moments = [datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
               datetime(2026, 3, 1, 14, 30, 15, 999999, tzinfo=paris),  # stored as 12:30 UTC
               datetime(2026, 3, 1, 12, 30, 15)]  # naive: taken as UTC
    # Added straight to the session, not through audit.record: the chain does not depend on it.
    for i, at in enumerate(moments):
        db.session.add(AuditEvent(actor="ꝺave", action=f"test.roundtrip{i}", at=at, target="ťarget",
                                  before=nested, after={"deep": [[[{"x": [nested]}]]]}, detail="détail"))
    db.session.flush()  # one flush of three new events, then two more events in a second flush
    audit.record(None, "test.bare")
    audit.record("cli", "test.after", before={"list": []}, after={})
    db.session.commit()

    rows = _stored(backend)
    assert [r["action"] for r in rows] == ["test.roundtrip0", "test.roundtrip1", "test.roundtrip2",
                                           "test.bare", "test.after"]
    assert rows[0]["before"]["ünïcødé"] == "Grüße, 世界 🚀" and rows[0]["before"]["tuple"] == ["a", 1]
    assert rows[1]["at"] == datetime(2026, 3, 1, 12, 30, 15, 999999, tzinfo=UTC)
    assert rows[3]["at"] is not None and rows[3]["target"] == "" and rows[3]["before"] is None
    previous = GENESIS
    for row in rows:
        assert row["prev_hash"] == previous, row["action"]
        assert row["hash"] == event_hash(previous, row), row["action"]
        previous = row["hash"]
    assert _verify(app) == (0, (f"The audit chain of 5 events is intact.\nLast event {rows[-1]['id']}, "
                               f"hash {rows[-1]['hash']} (keep it elsewhere to prove later that no "
                               "event was removed from the end).\n"))


def test_concurrent_writers_extend_one_unbroken_chain(app, backend):
    """4 writers × 25 events at once: two as jobs do (write_transaction, IMMEDIATE on SQLite),
    two in plain DEFERRED transactions, where recording takes the lock itself."""
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(25):
                    if n < 2:
                        with write_transaction():
                            audit.record(f"writer{n}", "test.concurrent", target=f"{n}:{i}")
                    else:
                        audit.record(f"writer{n}", "test.concurrent", target=f"{n}:{i}", after={"i": i})
                        db.session.commit()
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    rows = _stored(backend)
    assert len(rows) == 100 and len({r["target"] for r in rows}) == 100
    assert len({r["prev_hash"] for r in rows}) == 100  # no two events claim the same predecessor
    assert len({r["actor"] for r in rows[:50]}) > 1  # the writers really interleaved
    assert _verify(app)[1].startswith("The audit chain of 100 events is intact.")


def test_recording_holds_the_chain_lock_until_the_transaction_ends(app, backend):
    """Even a DEFERRED transaction: once an event is flushed, no other writer can extend the
    chain (SQLite: the write lock; PostgreSQL: the advisory lock) until it commits."""
    db.session.commit()
    audit.record("cli", "test.locked")
    db.session.flush()
    other = create_engine(backend["database"], poolclass=NullPool)
    try:
        if backend["database"].startswith("sqlite"):
            conn = sqlite3.connect(make_url(backend["database"]).database, timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                conn.execute("BEGIN IMMEDIATE")
            conn.close()
        else:
            with other.connect() as conn:
                assert conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": audit.CHAIN_LOCK_KEY}) is False
        db.session.commit()
        if backend["database"].startswith("sqlite"):
            conn = sqlite3.connect(make_url(backend["database"]).database, timeout=0, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            conn.close()
        else:
            with other.connect() as conn:
                assert conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": audit.CHAIN_LOCK_KEY}) is True
    finally:
        other.dispose()


def test_an_event_edited_by_hand_is_named_with_its_id(app, backend):
    for i in range(5):
        audit.record("cli", "deploy.start", target=f"deployment:{i}", after={"version": f"1.{i}.0"})
    db.session.commit()
    rows = _stored(backend)
    victim = rows[2]
    _behind_relapps_back(backend, f"UPDATE audit_events SET actor = 'mallory' WHERE id = {victim['id']}")
    assert _stored(backend)[2]["actor"] == "mallory"
    status, output = _verify(app)
    assert status == 1
    assert output == (f"Event {victim['id']} (deploy.start, {victim['at']:%Y-%m-%d %H:%M:%S} UTC) does not "
                      "match its hash: it was changed after it was recorded.\n")


def test_an_edit_that_recomputes_the_hash_breaks_the_next_link(app, backend):
    for i in range(3):
        audit.record("cli", "deploy.start", target=f"deployment:{i}")
    db.session.commit()
    rows = _stored(backend)
    forged = event_hash(rows[1]["prev_hash"], {**rows[1], "actor": "mallory"})
    _behind_relapps_back(backend, f"UPDATE audit_events SET actor = 'mallory', hash = '{forged}' "
                                  f"WHERE id = {rows[1]['id']}")
    status, output = _verify(app)
    assert (status, output) == (1, (f"Event {rows[2]['id']} does not follow event {rows[1]['id']}: "
                                   "an event before it was removed or reordered.\n"))


def test_a_removed_event_is_found(app, backend):
    for i in range(4):
        audit.record("cli", "release.cut", target=f"release:{i}")
    db.session.commit()
    rows = _stored(backend)
    _behind_relapps_back(backend, f"DELETE FROM audit_events WHERE id = {rows[1]['id']}")
    assert _verify(app) == (1, (f"Event {rows[2]['id']} does not follow event {rows[0]['id']}: "
                               "an event before it was removed or reordered.\n"))
    _behind_relapps_back(backend, f"DELETE FROM audit_events WHERE id = {rows[0]['id']}")
    assert _verify(app) == (1, (f"Event {rows[2]['id']} does not follow the start of the chain: "
                               "an event before it was removed or reordered.\n"))


def test_the_database_refuses_update_and_delete_even_for_the_table_owner(app, backend):
    audit.record("cli", "test.guarded", target="x")
    db.session.commit()
    if backend["database"].startswith("postgresql"):
        owner, me = db.session.execute(text(
            "SELECT tableowner, current_user FROM pg_tables WHERE tablename = 'audit_events'")).one()
        assert owner == me  # the app's own role owns the table, and is still refused
        db.session.rollback()
    statements = ["UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events",
                  "UPDATE audit_events SET hash = prev_hash"]
    if backend["database"].startswith("postgresql"):
        statements.append("TRUNCATE audit_events")  # would drop the chain's tail unseen
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 1
    assert db.session.scalar(select(AuditEvent.actor)) == "cli"
    assert _verify(app)[0] == 0


def test_an_empty_log_and_an_unmigrated_database_get_a_sentence(app, backend, tmp_path):
    assert _verify(app) == (0, "The audit log is empty: there is no chain to verify.\n")
    from relapp import create_app

    bare = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
                       "REDIS_URL": backend["redis"], "TESTING": True, "SECRET_KEY": "x",
                       "INSTANCE_PATH": str(tmp_path / "bare")})
    with bare.app_context():  # the command runs in the context it finds (here: the test's)
        result = bare.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "no relapp tables yet" in result.output and "Traceback" not in result.output
