"""API: projects, releases, changelogs, hotfixes, adoption."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_login import current_user

from ...domain import changelog as cl
from ...domain.pipeline import Role
from ...services import adoption as adoption_svc
from ...services import release_retry as retry_svc
from ...services import releases as svc
from ...services.projects import get_project
from ...services.projects import projects as all_projects
from ..converters import int_arg
from ..links import adoption_link
from . import PATHS, api_auth, bp, idempotent, parse, schemas
from .schemas import dump

LIMIT_MAX = 200


@bp.get("/projects")
@api_auth(Role.VIEWER)
def projects() -> Any:
    """All projects."""
    return dump(schemas.Projects(projects=[schemas.ProjectOut.of(p) for p in all_projects()]))


@bp.get("/projects/<key>/releases")
@api_auth(Role.VIEWER)
def list_releases(key: str) -> Any:
    """The project's releases, newest version first."""
    project = get_project(key)
    limit = int_arg("limit", 50, low=1, high=LIMIT_MAX, clamp=True) or 50
    rows = svc.list_releases(project, limit)
    return dump(schemas.Releases(releases=[schemas.ReleaseOut.of(r) for r in rows]))


@bp.post("/projects/<key>/releases")
@api_auth(Role.ENGINEER)
@idempotent
def cut(key: str) -> Any:
    """Cut a release from main: the next version is allocated now, the tag is made by a job."""
    project = get_project(key)
    data = parse(schemas.CutIn)
    with adoption_link(project):
        release, job = svc.cut(project, current_user, ref=data.ref, bump=data.bump, reason=data.reason,
                               confirm_baseline=data.confirm_baseline)
    return dump(schemas.CutAccepted.of(release, job)), 202


@bp.get("/projects/<key>/next")
@api_auth(Role.VIEWER)
def next_version(key: str) -> Any:
    """The version, tag, previous release and commit count a cut from `ref` would get (409 with the
    cut's own sentence when it would be refused)."""
    project = get_project(key)
    ref = request.args.get("ref") or None
    with adoption_link(project):
        found = svc.preview(project, ref)
    return dump(schemas.NextOut.of(found))


@bp.get("/projects/<key>/releases/<version>")
@api_auth(Role.VIEWER)
def show_release(key: str, version: str) -> Any:
    """One release with its deployments, decisions and hotfixes."""
    found = svc.release_details(get_project(key), version, fixes=request.args.get("fixes") != "0")
    return dump(schemas.ReleaseFull.of_details(found))


@bp.get("/projects/<key>/releases/<version>/changelog")
@api_auth(Role.VIEWER)
def changelog(key: str, version: str) -> Any:
    """What went into a release (since the release it follows, or `?since=VERSION`)."""
    project, release = svc.project_release(key, version)
    since = request.args.get("since")
    log, start = svc.changelog(project, release, since=since)
    # The title the page's download gives it: the API's Markdown is that file, byte for byte.
    title = f"{project.name} {release.version}" + (f" (since {start.version})" if start else "")
    if request.args.get("format") == "markdown":
        text = cl.to_markdown(log, title=title, issue_url_template=project.issue_url_template or None,
                              pr_url_template=project.pr_url_template or None)
        return Response(text, mimetype="text/markdown",
                        headers={"Content-Disposition": f'inline; filename="{project.key}-{release.version}.md"'})
    return dump(schemas.ChangelogOut.of(release.version, start.version if start else None,
                                        cl.to_json(log, pr_url_template=project.pr_url_template or None)))


@bp.post("/projects/<key>/releases/<version>/hotfixes")
@api_auth(Role.ENGINEER)
@idempotent
def create_hotfix(key: str, version: str) -> Any:
    """Start a hotfix on the line of `version`: cherry-pick `commits`, or tag the branch head."""
    project = get_project(key)
    data = parse(schemas.HotfixIn)
    release, job = svc.hotfix(project, version, current_user, commits=data.commits,
                              branch_head=data.branch_head, force_reason=data.force_reason)
    return dump(schemas.HotfixAccepted.of(release, job)), 202


@bp.get("/projects/<key>/adoption")
@api_auth(Role.VIEWER)
def adoption(key: str) -> Any:
    """How the repository's existing tags were understood, and what main would follow."""
    return dump(schemas.Adoption.of(adoption_svc.adopt_report(get_project(key))))


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
        "post": _op("Cut a release from main", ok="202", params=["project"],
                    body_schema={"$ref": "#/components/schemas/CutIn"}),
    },
    "/api/v1/projects/{project}/releases/{version}": {"get": _op("One release", params=["project", "version"])},
    "/api/v1/projects/{project}/releases/{version}/changelog": {
        "get": _op("A release's changelog", params=["project", "version"], query=["since", "format"])},
    "/api/v1/projects/{project}/releases/{version}/hotfixes": {
        "post": _op("Start a hotfix", ok="202", params=["project", "version"],
                    body_schema={"$ref": "#/components/schemas/HotfixIn"})},
    "/api/v1/projects/{project}/adoption": {"get": _op("Tag adoption report", params=["project"])},
    "/api/v1/projects/{project}/next": {
        "get": _op("Preview the next release from main (nothing is written)", params=["project"], query=["ref"])},
})


@bp.post("/projects/<key>/releases/<version>/retry")
@api_auth(Role.ENGINEER)
@idempotent
def retry_release(key: str, version: str) -> Any:
    """Retry a release's failed tag or hotfix job: the same version and tag, a new job (answered
    as the cut or the hotfix that made the release was)."""
    project, release = svc.project_release(key, version)
    release, job = retry_svc.retry(project, release, current_user)
    accepted = schemas.HotfixAccepted if job.kind == "hotfix" else schemas.CutAccepted
    return dump(accepted.of(release, job)), 202


_retry_op = _op("Retry a failed tag or hotfix job; the release keeps its version and tag", ok="202",
                params=["project", "version"])
_retry_op["responses"]["202"]["content"] = {"application/json": {"schema": {"oneOf": [
    {"$ref": "#/components/schemas/CutAccepted"}, {"$ref": "#/components/schemas/HotfixAccepted"}]}}}
PATHS["/api/v1/projects/{project}/releases/{version}/retry"] = {"post": _retry_op}
