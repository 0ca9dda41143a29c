"""The audit filters and the drift reads go through their indexes (issue 10): with thousands of
rows in the tables, the database's own plan for each query the app sends names the index and
never scans the table; on PostgreSQL, the rows the plan reads stay near one page. And the index
migration upgrades and downgrades on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import event, inspect, select, text

from relapp.extensions import db
from relapp.models import AuditEvent, Environment
from relapp.services import audit, drift

ROWS = 30_000
ACTIONS = ("deploy.request", "deploy.finish", "deploy.cancel", "environment.lock",
           "environment.drift", "release.cut", "decision.record", "user.create")
ACTORS = ("rita", "erin", "quinn", "relapp", "relapp-drift")
NEW_INDEXES = {
    "jobs": {"ix_jobs_release_id", "ix_jobs_status_id"},
    "deployments": {"ix_deployments_env_status_id", "ix_deployments_env_status_finished",
                    "ix_deployments_job_id"},
    "releases": {"ix_releases_version_order", "ix_releases_project_created"},
    "audit_events": {"ix_audit_events_action_id", "ix_audit_events_actor_id",
                     "ix_audit_events_project_id_id", "ix_audit_events_action_target_id"},
}


def postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def numbers(count: int) -> str:
    """A FROM clause yielding n = 1..count on either backend."""
    if postgres():
        return f"generate_series(1, {count}) AS n"
    return (f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) "
            "SELECT n FROM s)")


def pick(options: tuple[str, ...], expression: str) -> str:
    """SQL choosing one of `options` by an integer expression (CASE works on both backends)."""
    cases = " ".join(f"WHEN {i} THEN '{o}'" for i, o in enumerate(options))
    return f"CASE ({expression}) % {len(options)} {cases} END"


# {"observed": "<n>"}: a drift state naming its row.
OBSERVED = """'{"observed": "' || n || '"}'"""


def as_json(expression: str) -> str:
    """Text as a JSON value: PostgreSQL wants the cast, SQLite stores JSON as the text itself."""
    return f"CAST({expression} AS JSON)" if postgres() else expression


def fill(history: Any) -> Environment:
    """ROWS audit events and ROWS deployments to prod, in bulk, then ANALYZE.

    Every 20th event is a real one (an action of ACTIONS, an actor of ACTORS, the project, an
    environment target); the rest are another action by another actor with no project. Every
    20th deployment succeeded; the rest failed. So what a filter or the drift check asks for is
    spread thin over the table: reading it newest first without the index would pass over many
    rows per row kept, and the planner knows it."""
    project = history.project
    prod = next(e for e in project.environments if e.name == "prod")
    release = history.releases["1.3.0"]
    real = "n % 20 = 0"
    db.session.execute(text(
        "INSERT INTO audit_events (at, actor, action, project_id, target, after, detail) "
        f"SELECT CURRENT_TIMESTAMP, CASE WHEN {real} THEN {pick(ACTORS, 'n / 20')} ELSE 'bot' END, "
        f"CASE WHEN {real} THEN {pick(ACTIONS, 'n / 60')} ELSE 'bulk.noise' END, "
        f"CASE WHEN {real} THEN {project.id} END, "
        f"CASE WHEN {real} THEN 'environment:demo/' || {pick(('qa', 'beta', 'prod'), 'n / 20')} "
        "ELSE 'bulk' END, "
        f"CASE WHEN {real} THEN {as_json(OBSERVED)} END, 'bulk' "
        f"FROM {numbers(ROWS)}"))
    db.session.execute(text(
        "INSERT INTO deployments (release_id, environment_id, status, attempt, created_at) "
        f"SELECT {release.id}, {prod.id}, CASE WHEN {real} THEN 'succeeded' ELSE 'failed' END, 1, "
        f"CURRENT_TIMESTAMP FROM {numbers(ROWS)}"))
    db.session.commit()
    for table in ("audit_events", "deployments"):
        db.session.execute(text(f"ANALYZE {table}"))
    db.session.commit()
    return prod


@contextmanager
def statements() -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and parameters) the app sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if not statement.lstrip().upper().startswith("EXPLAIN"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


def plan_of(statement: str, parameters: Any) -> Any:
    """The database's plan for one statement, as it ran it: PostgreSQL's EXPLAIN ANALYZE (JSON),
    or SQLite's EXPLAIN QUERY PLAN lines."""
    raw = db.session.connection().connection.driver_connection
    if postgres():
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            found = cursor.fetchone()[0]
        return found[0]["Plan"] if isinstance(found, list) else json.loads(found)[0]["Plan"]
    return [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def reads_of(run: Callable[[], Any], table: str) -> list[tuple[str, Any]]:
    """Run `run`, and for each statement it sent that reads `table`: the index it used, and on
    PostgreSQL the rows read from that table (kept and filtered out)."""
    with statements() as seen:
        run()
    found = []
    for statement, parameters in seen:
        if table not in statement:
            continue
        plan = plan_of(statement, parameters)
        if postgres():
            scans = [n for n in nodes(plan) if n.get("Relation Name") == table]
            assert scans, statement
            assert not [n for n in scans if n["Node Type"] == "Seq Scan"], (statement, plan)
            read = sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
                       for n in scans)
            found.append((" ".join(sorted({n.get("Index Name", "") for n in scans})), read))
        else:
            lines = [line for line in plan if f"{table} " in f"{line} " or " e " in f"{line} "]
            assert not [line for line in lines if line.startswith("SCAN") and "INDEX" not in line], \
                (statement, plan)
            found.append((" ".join(lines), None))
    return found


@pytest.mark.parametrize(("filters", "index"), [
    (audit.AuditFilters(action="deploy.finish"), "ix_audit_events_action_id"),
    (audit.AuditFilters(action="deploy"), "ix_audit_events_action_id"),
    (audit.AuditFilters(actor="quinn"), "ix_audit_events_actor_id"),
    (audit.AuditFilters(project="demo"), "ix_audit_events_project_id_id"),
])
def test_audit_filters_read_one_page_through_their_index(app, history, filters, index):
    fill(history)
    page: list[audit.AuditPage] = []
    known = audit.known_actions()
    reads = reads_of(lambda: page.append(audit.events(filters, before=10 ** 9, limit=50, actions=known)),
                     "audit_events")
    assert len(page[0].events) == 50
    assert page[0].next_before is not None
    assert any(index in used for used, _rows in reads), reads
    if postgres():
        branches = len(audit.matching_actions(filters.action, known)) if filters.action else 1
        # One page (51 rows) per branch, and the 50 rows fetched by id: never the 20,000.
        assert sum(rows for _used, rows in reads) <= 51 * branches + 51, reads


def test_the_action_list_skips_through_the_index(app, history):
    fill(history)
    names: list[list[str]] = []
    reads = reads_of(lambda: names.append(audit.known_actions()), "audit_events")
    assert set(ACTIONS) <= set(names[0]) and names[0] == sorted(names[0])
    assert len(reads) == 1
    if postgres():
        # A probe per name (and one that finds none), not a pass over 20,000 rows.
        assert reads[0][1] <= 2 * (len(names[0]) + 1), reads


def test_drift_reads_the_latest_state_by_index(app, history):
    prod = fill(history)
    newest = db.session.scalar(select(AuditEvent.id).where(
        AuditEvent.action == drift.DRIFT_ACTION, AuditEvent.target == "environment:demo/prod")
        .order_by(AuditEvent.id.desc()).limit(1))
    assert newest is not None
    state: list[Any] = []
    reads = reads_of(lambda: state.append(drift.last_state(prod)), "audit_events")
    assert state[0] == db.session.get(AuditEvent, newest).after
    assert any("ix_audit_events_action_target_id" in used for used, _rows in reads), reads
    reads = reads_of(lambda: state.append(drift.recorded_version(prod)), "deployments")
    assert state[1] == "1.3.0"
    assert any("ix_deployments_env_status_id" in used for used, _rows in reads), reads
    if postgres():
        assert all(rows <= 2 for _used, rows in reads), reads


def test_the_index_migration_downgrades_and_upgrades(app_ctx):
    def indexes() -> dict[str, set[str]]:
        found = inspect(db.engine)
        return {table: {i["name"] for i in found.get_indexes(table)} & (names | {"ix_releases_line"})
                for table, names in NEW_INDEXES.items()}

    db.session.remove()
    assert indexes() == NEW_INDEXES
    try:
        downgrade(revision="c884c051650f")
        # Back to the previous schema, with the index on a release line it replaced.
        assert indexes() == {table: {"ix_releases_line"} if table == "releases" else set()
                             for table in NEW_INDEXES}
    finally:
        upgrade()
    assert indexes() == NEW_INDEXES
