"""API: environments, deployments, decisions, the CD system's report back, jobs, audit."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import current_user

from ...domain.pipeline import Role
from ...errors import problem
from ...exceptions import ServiceError
from ...services import audit
from ...services import decisions as decision_svc
from ...services import deployments as svc
from ...services.projects import get_project
from ...services.queue import job_log
from ...services.releases import project_release
from ..converters import int_arg
from . import PATHS, api_auth, bp, idempotent, parse, schemas
from .schemas import dump

LIMIT_MAX = 200
LOG_LIMIT_MAX = 5000


@bp.get("/projects/<key>/environments")
@api_auth(Role.VIEWER)
def environments(key: str) -> Any:
    """Each environment: what runs there, deployed when and by whom, active deploy, lock, drift."""
    project = get_project(key)
    return dump(schemas.Environments(project=project.key, environments=[
        schemas.EnvironmentOut.of(state) for state in svc.environment_states(project)]))


@bp.post("/projects/<key>/releases/<version>/deployments")
@api_auth(Role.VIEWER)
@idempotent
def deploy(key: str, version: str) -> Any:
    """Ask for a deploy of a release to an environment: 202 queued, or 403/409 with the reasons."""
    project, release = project_release(key, version)
    data = parse(schemas.DeployIn)
    deployment = svc.request_deploy(project, release, data.environment, current_user,
                                    rollback_reason=data.rollback_reason,
                                    freeze_reason=data.freeze_reason)
    shown = schemas.DeploymentOut.of(deployment)
    return dump(schemas.DeployAccepted(deployment=shown, job=shown.job)), 202


@bp.post("/projects/<key>/releases/<version>/decisions")
@api_auth(Role.VIEWER)
@idempotent
def decide(key: str, version: str) -> Any:
    """Record a go or no-go on a release in an environment (the latest decision counts)."""
    project, release = project_release(key, version)
    data = parse(schemas.DecisionIn)
    decision = decision_svc.record_decision(project, release, data.environment, current_user,
                                            data.decision, data.comment, data.bugs)
    return dump(schemas.DecisionEnvelope(decision=schemas.DecisionOut.of(decision))), 201


def _environment(env: Any) -> dict[str, Any]:
    state = svc.environment_state(env)
    return dump(schemas.EnvironmentEnvelope(environment=schemas.EnvironmentOut.of(state)))


@bp.post("/projects/<key>/environments/<name>/lock")
@api_auth(Role.VIEWER)
@idempotent
def lock(key: str, name: str) -> Any:
    """Lock an environment with a reason (`{"locked": false}` unlocks it); release or admin."""
    data = parse(schemas.LockIn)
    env = svc.set_lock(get_project(key), name, current_user, locked=data.locked, reason=data.reason)
    return _environment(env)


@bp.post("/projects/<key>/environments/<name>/freeze")
@api_auth(Role.VIEWER)
@idempotent
def freeze(key: str, name: str) -> Any:
    """Freeze an environment with a reason (`{"frozen": false}` thaws it); release or admin."""
    data = parse(schemas.FreezeIn)
    env = svc.set_freeze(get_project(key), name, current_user, frozen=data.frozen,
                         reason=data.reason)
    return _environment(env)


def _deployment(deployment: Any) -> dict[str, Any]:
    return dump(schemas.DeploymentEnvelope(deployment=schemas.DeploymentOut.of(deployment)))


@bp.get("/deployments/<int:deployment_id>")
@api_auth(Role.VIEWER)
def show_deployment(deployment_id: int) -> Any:
    """One deployment with its job."""
    return _deployment(svc.get_deployment(deployment_id))


def _unsigned() -> Any:
    response = problem(401, svc.UNSIGNED, code="unauthorized")
    response.headers["WWW-Authenticate"] = 'Bearer realm="relapp"'
    return response


@bp.post("/deployments/<int:deployment_id>/status")
def report(deployment_id: int) -> Any:
    """The CD system's (signed) or a person's (token) report that a deploy succeeded or failed."""
    signature = request.headers.get(svc.SIGNATURE_HEADER)
    report_in: schemas.StatusReportIn
    if signature is not None:
        try:
            deployment, data = svc.accept_report(deployment_id, request.get_data(), signature)
        except svc.Unsigned:
            return _unsigned()
        report_in = schemas.load(schemas.SignedStatusReportIn, data)
        actor: Any = svc.report_actor(deployment)
    elif current_user.is_authenticated:
        deployment = svc.get_deployment(deployment_id)
        if not svc.may_deploy(current_user, deployment.environment):
            raise ServiceError(f"{current_user.username} ({current_user.role}) may not report on "
                               f"deploys to {deployment.environment.name}.", status=403,
                               code="forbidden")
        report_in = parse(schemas.StatusReportIn)
        actor = current_user._get_current_object()
    else:
        return _unsigned()
    updated = svc.report_status(deployment, report_in.status, attempt=report_in.attempt,
                                message=report_in.message, actor=actor)
    return _deployment(updated)


@bp.post("/deployments/<int:deployment_id>/cancel")
@api_auth(Role.VIEWER)
@idempotent
def cancel(deployment_id: int) -> Any:
    """Cancel a deploy: at once when queued or handed off; a running one is asked to stop."""
    data = request.get_json(silent=True) or {}
    if not isinstance(data, dict):
        raise ServiceError("The request body must be a JSON object.", code="invalid_json")
    reason = schemas.load(schemas.CancelIn, data).reason
    return _deployment(svc.cancel(svc.get_deployment(deployment_id), current_user, reason=reason))


@bp.get("/jobs/<int:job_id>")
@api_auth(Role.VIEWER)
def show_job(job_id: int) -> Any:
    """A job's state and its log lines (after `?after=SEQ`, at most `?limit=` lines)."""
    after = int_arg("after", 0) or 0
    limit = int_arg("limit", LOG_LIMIT_MAX, low=1, high=LOG_LIMIT_MAX, clamp=True) or LOG_LIMIT_MAX
    page = job_log(job_id, after=after, limit=limit)
    return dump(schemas.JobEnvelope(job=schemas.JobWithLog.of_page(page)))


@bp.get("/audit")
@api_auth(Role.VIEWER)
def audit_events() -> Any:
    """Audit events, newest first; filters project, action (or `deploy.*`), actor, since_id;
    page with `before_id` (the `next` link)."""
    limit = int_arg("limit", 50, low=1, high=LIMIT_MAX, clamp=True) or 50
    args: dict[str, Any] = {"limit": limit}
    project = get_project(request.args["project"]) if request.args.get("project") else None
    if project is not None:
        args["project"] = project.key
    for name in ("action", "actor"):
        if request.args.get(name):
            args[name] = request.args[name]
    since = int_arg("since_id", None)
    if since is not None:
        args["since_id"] = since
    filters = audit.AuditFilters(project=project.key if project else "",
                                 action=args.get("action", ""), actor=args.get("actor", ""),
                                 since_id=since)
    page = audit.events(filters, before=int_arg("before_id", None), limit=limit)
    following = None
    if page.next_before is not None:
        from urllib.parse import urlencode

        following = "/api/v1/audit?" + urlencode({**args, "before_id": page.next_before})
    return dump(schemas.AuditPage(
        events=[schemas.AuditEventOut.of(e, page.projects) for e in page.events], next=following))


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


PATHS.update({
    "/api/v1/projects/{project}/environments": {
        "get": _op("Environments: current version, who deployed it and when, lock, freeze, drift",
                   params=["project"])},
    "/api/v1/projects/{project}/releases/{version}/deployments": {
        "post": _op("Deploy a release to an environment (202 queued, or 409 with the reasons)",
                    ok="202", params=["project", "version"], body_schema={"$ref": "#/components/schemas/DeployIn"})},
    "/api/v1/projects/{project}/releases/{version}/decisions": {
        "post": _op("Record a go or no-go", ok="201", params=["project", "version"],
                    body_schema={"$ref": "#/components/schemas/DecisionIn"})},
    "/api/v1/projects/{project}/environments/{environment}/lock": {
        "post": _op("Lock or unlock an environment (release or admin)",
                    params=["project", "environment"], body_schema={"$ref": "#/components/schemas/LockIn"})},
    "/api/v1/projects/{project}/environments/{environment}/freeze": {
        "post": _op("Freeze or thaw an environment (release or admin)",
                    params=["project", "environment"], body_schema={"$ref": "#/components/schemas/FreezeIn"})},
    "/api/v1/deployments/{id}": {"get": _op("One deployment", params=["id"])},
    "/api/v1/deployments/{id}/status": {
        "post": _op("Report a deploy's end: signed by the CD system (X-Relapp-Signature-256) or "
                    "with the token of someone who may deploy there", params=["id"],
                    security=[{}, {"bearer": []}], body_schema={"oneOf": [
                        {"$ref": "#/components/schemas/SignedStatusReportIn"}, {"$ref": "#/components/schemas/StatusReportIn"}]})},
    "/api/v1/deployments/{id}/cancel": {
        "post": _op("Cancel a deployment (its requester, release or admin)", params=["id"],
                    body_schema={"$ref": "#/components/schemas/CancelIn"})},
    "/api/v1/jobs/{id}": {"get": _op("A job's state and log", params=["id"],
                                     query=["after", "limit"])},
    "/api/v1/jobs/{id}/stream": {"get": _op("A job's log and status as Server-Sent Events",
                                            params=["id"], query=["after"])},
    "/api/v1/audit": {"get": _op("Audit events, newest first", query=[
        "project", "action", "actor", "since_id", "before_id", "limit"])},
})
