"""The append-only audit log: every action, who, what, when, before and after."""

from __future__ import annotations

from typing import Any

from ..extensions import db
from ..models import AuditEvent, User


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
