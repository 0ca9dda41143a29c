"""API: environments, deployments, decisions, the CD system's report back, jobs, audit."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from flask_login import current_user
from sqlalchemy import select

from ...drivers import verify
from ...drivers.webhook import SIGNATURE_HEADER
from ...errors import problem
from ...exceptions import NotFound, ServiceError
from ...extensions import db
from ...joblog import lines
from ...models import AuditEvent, Deployment, Job
from ...services import audit
from ...services import decisions as decision_svc
from ...services import deployments as svc
from ...services.projects import get_project
from ...services.releases import get_release
from . import PATHS, api_auth, body, bp, field, idempotent

LIMIT_MAX = 200
LOG_LIMIT_MAX = 5000


def _int_arg(name: str, default: int | None, *, low: int = 0, high: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServiceError(f"The query parameter '{name}' must be a whole number.",
                           code="invalid_parameter") from None
    value = max(low, value)
    return min(value, high) if high is not None else value


@bp.get("/projects/<key>/environments")
@api_auth("viewer")
def environments(key: str) -> Any:
    """Each environment: what runs there, deployed when and by whom, active deploy, lock, drift."""
    project = get_project(key)
    return {"project": project.key,
            "environments": [svc.environment_json(env) for env in project.environments]}


@bp.post("/projects/<key>/releases/<version>/deployments")
@api_auth("viewer")
@idempotent
def deploy(key: str, version: str) -> Any:
    """Ask for a deploy of a release to an environment: 202 queued, or 403/409 with the reasons."""
    project = get_project(key)
    release = get_release(project, version)
    data = body()
    deployment = svc.request_deploy(
        project, release, field(data, "environment", str, required=True, max_len=64), current_user,
        rollback_reason=field(data, "rollback_reason", str, max_len=svc.MAX_REASON),
        freeze_reason=field(data, "freeze_reason", str, max_len=svc.MAX_REASON))
    payload = svc.deployment_json(deployment)
    return {"deployment": payload, "job": payload["job"]}, 202


@bp.post("/projects/<key>/releases/<version>/decisions")
@api_auth("viewer")
@idempotent
def decide(key: str, version: str) -> Any:
    """Record a go or no-go on a release in an environment (the latest decision counts)."""
    project = get_project(key)
    release = get_release(project, version)
    data = body()
    decision = decision_svc.record_decision(
        project, release, field(data, "environment", str, required=True, max_len=64), current_user,
        field(data, "decision", str, required=True, max_len=16),
        field(data, "comment", str, max_len=decision_svc.MAX_COMMENT),
        field(data, "bugs", list))
    return {"decision": decision_svc.decision_json(decision)}, 201


@bp.post("/projects/<key>/environments/<name>/lock")
@api_auth("viewer")
@idempotent
def lock(key: str, name: str) -> Any:
    """Lock an environment with a reason (`{"locked": false}` unlocks it); release or admin."""
    data = body()
    env = svc.set_lock(get_project(key), name, current_user,
                       locked=field(data, "locked", bool, default=True),
                       reason=field(data, "reason", str, max_len=svc.MAX_REASON))
    return {"environment": svc.environment_json(env)}


@bp.post("/projects/<key>/environments/<name>/freeze")
@api_auth("viewer")
@idempotent
def freeze(key: str, name: str) -> Any:
    """Freeze an environment with a reason (`{"frozen": false}` thaws it); release or admin."""
    data = body()
    env = svc.set_freeze(get_project(key), name, current_user,
                         frozen=field(data, "frozen", bool, default=True),
                         reason=field(data, "reason", str, max_len=svc.MAX_REASON))
    return {"environment": svc.environment_json(env)}


@bp.get("/deployments/<int:deployment_id>")
@api_auth("viewer")
def show_deployment(deployment_id: int) -> Any:
    """One deployment with its job."""
    return {"deployment": svc.deployment_json(svc.get_deployment(deployment_id))}


def _unsigned() -> Any:
    response = problem(401, f"Sign the body with the environment's webhook secret in "
                            f"{SIGNATURE_HEADER} (sha256=<hex HMAC>), or send an API token of "
                            f"someone who may deploy there.", code="unauthorized")
    response.headers["WWW-Authenticate"] = 'Bearer realm="relapp"'
    return response


@bp.post("/deployments/<int:deployment_id>/status")
def report(deployment_id: int) -> Any:
    """The CD system's (signed) or a person's (token) report that a deploy succeeded or failed."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None:
        raw = request.get_data()
        deployment = db.session.get(Deployment, deployment_id)
        settings = (deployment.environment.driver or {}) if deployment is not None else {}
        secret = settings.get("secret") if settings.get("kind") == "webhook" else None
        # Fail closed: no webhook secret (or no such deployment) means no signature is valid.
        if deployment is None or not isinstance(secret, str) or not verify(secret, raw, signature):
            return _unsigned()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ServiceError("The request body must be a JSON object.", code="invalid_json")
        attempt = field(data, "attempt", int, required=True)
        actor: Any = f"cd:{deployment.environment.name}"
    elif current_user.is_authenticated:
        deployment = svc.get_deployment(deployment_id)
        if not svc.may_deploy(current_user, deployment.environment):
            raise ServiceError(f"{current_user.username} ({current_user.role}) may not report on "
                               f"deploys to {deployment.environment.name}.", status=403,
                               code="forbidden")
        data = body()
        attempt = field(data, "attempt", int)
        actor = current_user._get_current_object()
    else:
        return _unsigned()
    updated = svc.report_status(deployment, field(data, "status", str, required=True, max_len=16),
                                attempt=attempt, message=field(data, "message", str),
                                actor=actor)
    return {"deployment": svc.deployment_json(updated)}


@bp.post("/deployments/<int:deployment_id>/cancel")
@api_auth("viewer")
@idempotent
def cancel(deployment_id: int) -> Any:
    """Cancel a deploy: at once when queued or handed off; a running one is asked to stop."""
    data = request.get_json(silent=True) or {}
    if not isinstance(data, dict):
        raise ServiceError("The request body must be a JSON object.", code="invalid_json")
    deployment = svc.cancel(svc.get_deployment(deployment_id), current_user,
                            reason=field(data, "reason", str, max_len=svc.MAX_REASON))
    return {"deployment": svc.deployment_json(deployment)}


@bp.get("/jobs/<int:job_id>")
@api_auth("viewer")
def show_job(job_id: int) -> Any:
    """A job's state and its log lines (after `?after=SEQ`, at most `?limit=` lines)."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    after = _int_arg("after", 0) or 0
    limit = _int_arg("limit", LOG_LIMIT_MAX, low=1, high=LOG_LIMIT_MAX) or LOG_LIMIT_MAX
    found = lines(job_id, after)
    data = svc.job_json(job) or {}
    deployment = db.session.scalar(select(Deployment.id).where(Deployment.job_id == job_id))
    data["deployment_id"] = deployment
    data["lines"] = [{"seq": row.seq, "at": row.at.isoformat(), "line": row.line}
                     for row in found[:limit]]
    data["more"] = len(found) > limit
    return {"job": data}


def _audit_json(event: AuditEvent, projects: dict[int, str]) -> dict[str, Any]:
    return {"id": event.id, "at": event.at.isoformat(), "actor": event.actor,
            "action": event.action,
            "project": projects.get(event.project_id) if event.project_id else None,
            "target": event.target, "before": event.before, "after": event.after,
            "detail": event.detail}


@bp.get("/audit")
@api_auth("viewer")
def audit_events() -> Any:
    """Audit events, newest first; filters project, action (or `deploy.*`), actor, since_id;
    page with `before_id` (the `next` link)."""
    limit = _int_arg("limit", 50, low=1, high=LIMIT_MAX) or 50
    args: dict[str, Any] = {"limit": limit}
    project = get_project(request.args["project"]) if request.args.get("project") else None
    if project is not None:
        args["project"] = project.key
    for name in ("action", "actor"):
        if request.args.get(name):
            args[name] = request.args[name]
    since = _int_arg("since_id", None)
    if since is not None:
        args["since_id"] = since
    filters = audit.AuditFilters(project=project.key if project else "",
                                 action=args.get("action", ""), actor=args.get("actor", ""),
                                 since_id=since)
    page = audit.events(filters, before=_int_arg("before_id", None), limit=limit)
    following = None
    if page.next_before is not None:
        from urllib.parse import urlencode

        following = "/api/v1/audit?" + urlencode({**args, "before_id": page.next_before})
    return {"events": [_audit_json(e, page.projects) for e in page.events], "next": following}


def _op(summary: str, *, ok: str = "200", params: list[str] | None = None,
        query: list[str] | None = None, body_schema: dict[str, Any] | None = None,
        security: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {ok: {"description": "OK"},
                                        "4XX": {"$ref": "#/components/responses/Problem"}}}
    parameters = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "integer" if p in ("id",) else "string"}}
                  for p in params or []]
    parameters += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                   for q in query or []]
    if parameters:
        op["parameters"] = parameters
    if body_schema:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body_schema}}}
    if security is not None:
        op["security"] = security
    return op


_REASON = {"type": ["string", "null"], "maxLength": svc.MAX_REASON}

PATHS.update({
    "/api/v1/projects/{project}/environments": {
        "get": _op("Environments: current version, who deployed it and when, lock, freeze, drift",
                   params=["project"])},
    "/api/v1/projects/{project}/releases/{version}/deployments": {
        "post": _op("Deploy a release to an environment (202 queued, or 409 with the reasons)",
                    ok="202", params=["project", "version"], body_schema={
                        "type": "object", "required": ["environment"],
                        "properties": {"environment": {"type": "string"},
                                       "rollback_reason": _REASON, "freeze_reason": _REASON}})},
    "/api/v1/projects/{project}/releases/{version}/decisions": {
        "post": _op("Record a go or no-go", ok="201", params=["project", "version"], body_schema={
            "type": "object", "required": ["environment", "decision"],
            "properties": {"environment": {"type": "string"},
                           "decision": {"enum": ["go", "no-go"]},
                           "comment": {"type": ["string", "null"]},
                           "bugs": {"type": ["array", "null"], "items": {"type": "string"}}}})},
    "/api/v1/projects/{project}/environments/{environment}/lock": {
        "post": _op("Lock or unlock an environment (release or admin)",
                    params=["project", "environment"], body_schema={
                        "type": "object", "properties": {"locked": {"type": "boolean"},
                                                         "reason": _REASON}})},
    "/api/v1/projects/{project}/environments/{environment}/freeze": {
        "post": _op("Freeze or thaw an environment (release or admin)",
                    params=["project", "environment"], body_schema={
                        "type": "object", "properties": {"frozen": {"type": "boolean"},
                                                         "reason": _REASON}})},
    "/api/v1/deployments/{id}": {"get": _op("One deployment", params=["id"])},
    "/api/v1/deployments/{id}/status": {
        "post": _op("Report a deploy's end: signed by the CD system (X-Relapp-Signature-256) or "
                    "with the token of someone who may deploy there", params=["id"],
                    security=[{}, {"bearer": []}], body_schema={
                        "type": "object", "required": ["status"],
                        "properties": {"status": {"enum": ["succeeded", "failed"]},
                                       "attempt": {"type": "integer"},
                                       "message": {"type": ["string", "null"]}}})},
    "/api/v1/deployments/{id}/cancel": {
        "post": _op("Cancel a deployment (its requester, release or admin)", params=["id"])},
    "/api/v1/jobs/{id}": {"get": _op("A job's state and log", params=["id"],
                                     query=["after", "limit"])},
    "/api/v1/jobs/{id}/stream": {"get": _op("A job's log and status as Server-Sent Events",
                                            params=["id"], query=["after"])},
    "/api/v1/audit": {"get": _op("Audit events, newest first", query=[
        "project", "action", "actor", "since_id", "before_id", "limit"])},
})
