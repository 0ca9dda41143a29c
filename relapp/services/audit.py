"""The append-only audit log: every action, who, what, when, before and after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from ..exceptions import ServiceError
from ..extensions import db
from ..models import AuditEvent, Project, User


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


def events(filters: AuditFilters, *, before: int | None = None, limit: int = 50) -> AuditPage:
    """The one audit query (page and API): events matching the filters, newest first,
    keyset-paginated on id."""
    projects = {pid: key for pid, key in db.session.execute(select(Project.id, Project.key))}
    query = select(AuditEvent)
    if filters.project:
        ids = [pid for pid, key in projects.items() if key == filters.project]
        query = query.where(AuditEvent.project_id.in_(ids))
    if filters.action:
        # "deploy" (or "deploy.*") matches deploy.request, deploy.cancel_request …; an exact
        # name matches itself.
        stem = filters.action.removesuffix("*").rstrip(".")
        query = query.where(or_(AuditEvent.action == stem,
                                AuditEvent.action.startswith(stem + ".", autoescape=True)))
    if filters.actor:
        query = query.where(AuditEvent.actor == filters.actor)
    if filters.start:
        query = query.where(AuditEvent.at >= datetime.combine(filters.start, datetime.min.time(), UTC))
    if filters.end:
        query = query.where(AuditEvent.at < datetime.combine(filters.end + timedelta(days=1), datetime.min.time(), UTC))
    if filters.since_id is not None:
        query = query.where(AuditEvent.id > filters.since_id)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    found = list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    next_before = found[limit - 1].id if len(found) > limit else None
    return AuditPage(found[:limit], next_before, projects)


def known_actions() -> list[str]:
    """Every action name recorded so far (for the audit page's filter list)."""
    return sorted(db.session.scalars(select(AuditEvent.action).distinct()))
