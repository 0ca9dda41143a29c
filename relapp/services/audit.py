"""The append-only audit log: every action, who, what, when, before and after."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import event as sa_event
from sqlalchemy import inspect, select, text, union_all
from sqlalchemy.orm import Session

from ..domain.auditchain import FIELDS, GENESIS, ChainReport, event_hash, verify_chain
from ..exceptions import ServiceError
from ..extensions import db
from ..models import AuditEvent, Project, User, utcnow


def record(actor: User | str | None, action: str, *, project_id: int | None = None,
           target: str = "", before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, detail: str = "") -> AuditEvent:
    """Add an audit event to the current transaction (committed with the action it records)."""
    if isinstance(actor, User):
        actor_id, actor_name = actor.id, actor.username
    else:
        actor_id, actor_name = None, actor or "relapp"
    event = AuditEvent(actor_id=actor_id, actor=actor_name, action=action, project_id=project_id,
                       target=target, before=before, after=after, detail=detail)
    db.session.add(event)
    return event


# -- the hash chain ------------------------------------------------------------------------------

# One chain per installation, extended by one transaction at a time. On PostgreSQL a transaction
# takes this advisory lock ("relaudit") before it reads the last hash and holds it until it ends;
# on SQLite it holds the database's write lock, which no other writer can share.
CHAIN_LOCK_KEY = int.from_bytes(b"relaudit", "big")


def _lock_chain(connection: Any) -> None:
    """Make this transaction the chain's only writer until it ends.

    SQLite: a state-changing request or `write_transaction()` already began IMMEDIATE; anything
    else (a DEFERRED transaction) takes the write lock here with a write that changes nothing,
    so the last hash read next is the newest one (SQLite refuses the lock to a transaction whose
    snapshot is stale, rather than letting it fork the chain)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    else:
        connection.execute(text("UPDATE audit_events SET id = id WHERE 0"))


def _as_stored(value: Any) -> Any:
    """A JSON value as the database gives it back (tuples as lists, keys as strings), so the
    hash taken now is the one `audit verify` recomputes from the row."""
    return None if value is None else json.loads(json.dumps(value))


def _chain_new_events(session: Session, _flush_context: Any, _instances: Any) -> None:
    """Before a flush that inserts audit events: take the chain's lock, read the last hash and
    link the new events to it and to each other, in the order they were added."""
    new = [obj for obj in session.new if isinstance(obj, AuditEvent)]
    if not new:
        return
    new.sort(key=lambda obj: inspect(obj).insert_order)
    connection = session.connection()
    _lock_chain(connection)
    previous = connection.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    if previous is None:
        previous = GENESIS
    for obj in new:
        # Every hashed field is set here as it will be stored (column defaults apply only at
        # insert, after the hash).
        obj.at = obj.at or utcnow()
        obj.target = obj.target or ""
        obj.detail = obj.detail or ""
        obj.before = _as_stored(obj.before)
        obj.after = _as_stored(obj.after)
        obj.prev_hash = previous
        obj.hash = event_hash(previous, {name: getattr(obj, name) for name in FIELDS})
        previous = obj.hash


# On the app's session class: every flush of every request, job and command passes through it.
sa_event.listen(db.session, "before_flush", _chain_new_events)


def verify() -> ChainReport:
    """Walk the whole chain in id order, streamed, and report the first broken link."""
    columns = [AuditEvent.id, AuditEvent.prev_hash, AuditEvent.hash,
               *(getattr(AuditEvent, name) for name in FIELDS)]
    rows = db.session.execute(select(*columns).order_by(AuditEvent.id)
                              .execution_options(yield_per=2000)).mappings()
    try:
        return verify_chain(cast("Iterable[Mapping[str, Any]]", rows))
    finally:
        rows.close()
        db.session.rollback()


# -- reading it --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """What the audit log is narrowed to; empty strings mean no filter."""

    project: str = ""
    action: str = ""
    actor: str = ""
    start: date | None = None
    end: date | None = None
    since_id: int | None = None

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return bool(self.project or self.action or self.actor or self.start or self.end)

    def args(self) -> dict[str, str]:
        """The filters as query arguments (for links that keep them)."""
        values = {"project": self.project, "action": self.action, "actor": self.actor,
                  "from": self.start.isoformat() if self.start else "",
                  "to": self.end.isoformat() if self.end else ""}
        return {k: v for k, v in values.items() if v}


def parse_audit_filters(args: Any) -> AuditFilters:
    """Filters from query arguments, with a 400 sentence for a malformed date."""
    def day(name: str) -> date | None:
        text = (args.get(name) or "").strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ServiceError(f"'{text[:20]}' is not a date like 2026-03-01 (the '{name}' filter).") from None

    return AuditFilters(project=(args.get("project") or "").strip()[:64],
                        action=(args.get("action") or "").strip()[:64],
                        actor=(args.get("actor") or "").strip()[:64], start=day("from"), end=day("to"))


@dataclass
class AuditPage:
    """One page of audit events, newest first, and the id to continue before."""

    events: list[AuditEvent]
    next_before: int | None
    projects: dict[int, str]


# The action names recorded so far, found by skipping through the (action, id) index: one index
# probe per distinct name (a few dozen), never a DISTINCT scan of millions of events.
_KNOWN_ACTIONS = text("""
    WITH RECURSIVE found(action) AS (
        SELECT MIN(action) FROM audit_events
        UNION ALL
        SELECT (SELECT MIN(e.action) FROM audit_events e WHERE e.action > found.action)
        FROM found WHERE found.action IS NOT NULL
    )
    SELECT action FROM found WHERE action IS NOT NULL
""")


def known_actions() -> list[str]:
    """Every action name recorded so far (the audit page's filter list; the families a filter
    such as "deploy" stands for)."""
    return [name for name in db.session.scalars(_KNOWN_ACTIONS) if name]


def matching_actions(pattern: str, known: list[str]) -> list[str]:
    """The recorded actions a filter names: "deploy" (or "deploy.*") stands for deploy.request,
    deploy.cancel_request …; an exact name for itself."""
    stem = pattern.removesuffix("*").rstrip(".")
    return [name for name in known if name == stem or name.startswith(stem + ".")]


def events(filters: AuditFilters, *, before: int | None = None, limit: int = 50,
           actions: list[str] | None = None) -> AuditPage:
    """The one audit query (page and API): events matching the filters, newest first,
    keyset-paginated on id.

    Action, actor and project each have an index that yields their events newest first (with id),
    so a page reads about `limit` rows however long the log is; a date range is read either newest
    first on id or through the `at` index, whichever the database finds shorter.
    An action family ("deploy") is one top-`limit` branch per recorded action name of it, merged.
    `actions` is known_actions() when the caller already has it."""
    projects = {pid: key for pid, key in db.session.execute(select(Project.id, Project.key))}
    conditions: list[Any] = []
    if filters.project:
        ids = [pid for pid, key in projects.items() if key == filters.project]
        if not ids:
            return AuditPage([], None, projects)
        conditions.append(AuditEvent.project_id == ids[0] if len(ids) == 1
                          else AuditEvent.project_id.in_(ids))
    if filters.actor:
        conditions.append(AuditEvent.actor == filters.actor)
    if filters.start:
        conditions.append(AuditEvent.at >= datetime.combine(filters.start, datetime.min.time(), UTC))
    if filters.end:
        conditions.append(AuditEvent.at < datetime.combine(filters.end + timedelta(days=1),
                                                           datetime.min.time(), UTC))
    if filters.since_id is not None:
        conditions.append(AuditEvent.id > filters.since_id)
    if before is not None:
        conditions.append(AuditEvent.id < before)
    query = select(AuditEvent).where(*conditions)
    if filters.action:
        names = matching_actions(filters.action, known_actions() if actions is None else actions)
        if not names:
            return AuditPage([], None, projects)
        branches = [select(AuditEvent.id).where(AuditEvent.action == name, *conditions)
                    .order_by(AuditEvent.id.desc()).limit(limit + 1).subquery() for name in names]
        picked = union_all(*(select(branch.c.id) for branch in branches)).subquery()
        query = select(AuditEvent).join(picked, AuditEvent.id == picked.c.id)
    found = list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    next_before = found[limit - 1].id if len(found) > limit else None
    return AuditPage(found[:limit], next_before, projects)
