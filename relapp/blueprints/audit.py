"""Pages: the audit log (read-only, filterable) and the printable release evidence."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, render_template, request
from flask_login import login_required

from ..domain.secretmask import redact_value
from ..services import audit
from ..services.evidence import evidence as evidence_of
from ..services.projects import get_project, issue_url, projects
from ..templating import render_page
from .converters import int_arg

bp = Blueprint("audit", __name__)


@bp.app_template_filter("compact_json")
def compact_json(value: Any) -> str:
    """JSON on one line with sorted keys (escaped by the template like any text), any URL
    credential in it redacted (older audit rows may hold one)."""
    return json.dumps(redact_value(value), sort_keys=True, separators=(", ", ": "),
                      ensure_ascii=False, default=str)


@bp.app_template_filter("redact_urls")
def redact_urls_filter(value: Any) -> Any:
    """Text with the credentials of any URL in it redacted."""
    return redact_value(value)


@bp.get("/audit")
@login_required
def index() -> Any:
    """Audit events newest first, filtered by project, action, actor and dates; keyset pages."""
    filters = audit.parse_audit_filters(request.args)
    before = int_arg("before", None, low=1)
    actions = audit.known_actions()
    page = audit.events(filters, before=before, actions=actions)
    return render_page("audit/index.html", "audit_log", page=page, filters=filters,
                       before="" if before is None else str(before), projects=projects(), actions=actions)


@bp.get("/releases/<project_key>/<version>/evidence")
@login_required
def evidence(project_key: str, version: str) -> Any:
    """One printable page per release: tag, commit, changelog, decisions, deploys, hotfixes."""
    ev = evidence_of(get_project(project_key), version)
    return render_template("evidence/show.html", ev=ev, issue_url=issue_url)
