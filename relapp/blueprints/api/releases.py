"""API: projects, releases, changelogs, hotfixes, adoption."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_login import current_user
from sqlalchemy import select

from ...domain import changelog as cl
from ...extensions import db
from ...models import Project, Release
from ...services import releases as svc
from ...services.projects import get_project
from . import PATHS, api_auth, body, bp, field, idempotent

LIMIT_MAX = 200


def _project_json(project: Project) -> dict[str, Any]:
    return {"key": project.key, "name": project.name, "main_branch": project.main_branch,
            "tag_template": project.tag_template, "release_branch_template": project.release_branch_template,
            "environments": [env.name for env in project.environments],
            "teams": [{"name": t.name, "paths": list(t.paths)} for t in project.teams]}


@bp.get("/projects")
@api_auth("viewer")
def projects() -> Any:
    """All projects."""
    rows = db.session.scalars(select(Project).order_by(Project.key)).all()
    return {"projects": [_project_json(p) for p in rows]}


@bp.get("/projects/<key>/releases")
@api_auth("viewer")
def list_releases(key: str) -> Any:
    """The project's releases, newest version first."""
    project = get_project(key)
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), LIMIT_MAX)
    except ValueError:
        limit = 50
    rows = db.session.scalars(select(Release).where(Release.project_id == project.id)
                              .order_by(Release.major.desc(), Release.minor.desc(), Release.patch.desc())
                              .limit(limit)).all()
    return {"releases": [svc.release_json(r) for r in rows]}


@bp.post("/projects/<key>/releases")
@api_auth("engineer")
@idempotent
def cut(key: str) -> Any:
    """Cut a release from main: the next version is allocated now, the tag is made by a job."""
    project = get_project(key)
    data = body()
    release, job = svc.cut(project, current_user, ref=field(data, "ref", str, max_len=200),
                           bump=field(data, "bump", str, max_len=10), reason=field(data, "reason", str))
    return {"version": release.version, "tag": release.tag, "commit": release.sha,
            "follows": svc.release_json(release)["follows"],
            "release": svc.release_json(release), "job": svc.job_json(job)}, 202


@bp.get("/projects/<key>/releases/<version>")
@api_auth("viewer")
def show_release(key: str, version: str) -> Any:
    """One release with its deployments, decisions and hotfixes."""
    project = get_project(key)
    release = svc.get_release(project, version)
    data = svc.release_json(release, full=True)
    if release.kind == "hotfix" and release.state == "tagged" and request.args.get("fixes") != "0":
        data["fixes_on_main"] = svc.fixes_on_main(project, release)
    return data


@bp.get("/projects/<key>/releases/<version>/changelog")
@api_auth("viewer")
def changelog(key: str, version: str) -> Any:
    """What went into a release (since the release it follows, or `?since=VERSION`)."""
    project = get_project(key)
    release = svc.get_release(project, version)
    since = request.args.get("since")
    log, start = svc.changelog(project, release, since=since)
    title = f"{release.version}" + (f" (since {start.version})" if start else "")
    if request.args.get("format") == "markdown":
        text = cl.to_markdown(log, title=title, issue_url_template=project.issue_url_template or None)
        return Response(text, mimetype="text/markdown",
                        headers={"Content-Disposition": f'inline; filename="{project.key}-{release.version}.md"'})
    return {"version": release.version, "since": start.version if start else None, **cl.to_json(log)}


@bp.post("/projects/<key>/releases/<version>/hotfixes")
@api_auth("engineer")
@idempotent
def create_hotfix(key: str, version: str) -> Any:
    """Start a hotfix on the line of `version`: cherry-pick `commits`, or tag the branch head."""
    project = get_project(key)
    data = body()
    commits = field(data, "commits", list)
    branch_head = field(data, "branch_head", bool, default=False)
    release, job = svc.hotfix(project, version, current_user, commits=commits, branch_head=branch_head,
                              force_reason=field(data, "force_reason", str))
    return {"version": release.version, "tag": release.tag, "base": release.base.version if release.base else None,
            "branch": (release.details or {}).get("branch"), "release": svc.release_json(release),
            "job": svc.job_json(job)}, 202


@bp.get("/projects/<key>/adoption")
@api_auth("viewer")
def adoption(key: str) -> Any:
    """How the repository's existing tags were understood, and what main would follow."""
    return svc.adopt_report(get_project(key)).as_json()


def _op(summary: str, *, body_schema: dict[str, Any] | None = None, ok: str = "200",
        params: list[str] | None = None, query: list[str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "OK"},
                                                           "4XX": {"$ref": "#/components/responses/Problem"}}}
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params or []]
    parameters += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in query or []]
    if parameters:
        op["parameters"] = parameters
    if body_schema:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
    return op


PATHS.update({
    "/api/v1/projects": {"get": _op("List projects")},
    "/api/v1/projects/{project}/releases": {
        "get": _op("List releases, newest first", params=["project"], query=["limit"]),
        "post": _op("Cut a release from main", ok="202", params=["project"], body_schema={
            "type": "object", "properties": {"ref": {"type": "string"}, "bump": {"enum": ["minor", "major"]},
                                             "reason": {"type": "string"}}}),
    },
    "/api/v1/projects/{project}/releases/{version}": {"get": _op("One release", params=["project", "version"])},
    "/api/v1/projects/{project}/releases/{version}/changelog": {
        "get": _op("A release's changelog", params=["project", "version"], query=["since", "format"])},
    "/api/v1/projects/{project}/releases/{version}/hotfixes": {
        "post": _op("Start a hotfix", ok="202", params=["project", "version"], body_schema={
            "type": "object", "properties": {"commits": {"type": "array", "items": {"type": "string"}},
                                             "branch_head": {"type": "boolean"},
                                             "force_reason": {"type": "string"}}})},
    "/api/v1/projects/{project}/adoption": {"get": _op("Tag adoption report", params=["project"])},
})
