"""Pages: a release (changelog, deployments, decisions, hotfixes), the card actions of the board
(cut, deploy / promote, go / no-go, hotfix) and the job log view."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from htmx_flask import make_response
from jinja2_fragments.flask import render_block

from ..auth import role_required
from ..domain import changelog as cl
from ..domain.pipeline import Role
from ..exceptions import NotFound, ServiceError
from ..services import adoption as adoption_svc
from ..services import cards
from ..services import live_regions as regions
from ..services import release_retry as retry_svc
from ..services import releases as svc
from ..services import releases_read as read
from ..services.decisions import record_decision
from ..services.deployments import request_deploy
from ..services.jobs_read import get_job
from ..services.projects import get_project
from ..services.queue import stream_state
from ..templating import render_page
from .links import adoption_link

bp = Blueprint("releases", __name__)

# The board refetches itself when this event reaches it.
CHANGED = "board-changed"
_BUG_SPLIT = re.compile(r"[\s,;]+")
_TEAM_ID = re.compile(r"cl-team-\d{1,4}")


def _text(name: str) -> str | None:
    """A form field, stripped; None when missing or blank."""
    value = request.form.get(name, "").strip()
    return value or None


def _queued(release: Any, job: Any, message: str) -> Response:
    """The panel that says what was done (and where its job's log is); the board refetches."""
    return make_response(render_template("releases/_queued.html", release=release, job=job,
                                         message=message), trigger=CHANGED)


def _done(release: Any, job: Any, message: str, target: str) -> Any:
    """A form post's answer: the panel saying what was done for htmx, else a flash and a redirect."""
    if request.htmx:
        return _queued(release, job, message)
    flash(message, "success")
    return redirect(target)


# --- cut -------------------------------------------------------------------------------------

@bp.get("/releases/<project>/cut")
@role_required(Role.ENGINEER)
def new(project: str) -> Any:
    """The form that cuts a release from main, with what the cut would make before the click."""
    proj = get_project(project)
    preview, refusal = None, None
    try:
        with adoption_link(proj):
            preview = svc.preview(proj)
    except ServiceError as exc:
        refusal = exc
    return render_page("releases/cut.html", "panel", project=proj, preview=preview, refusal=refusal,
                       may_confirm_baseline=current_user.role == Role.ADMIN)


@bp.post("/releases/<project>")
@role_required(Role.ENGINEER)
def create(project: str) -> Any:
    """Cut a release from main: the version is allocated now, the tag is made by a job."""
    bump = "major" if request.form.get("major") else None
    proj = get_project(project)
    with adoption_link(proj):
        release, job = svc.cut(proj, current_user, bump=bump, reason=_text("reason"),
                               confirm_baseline=bool(request.form.get("confirm_baseline")))
    return _done(release, job, f"Cutting {release.version}: tagging {release.tag}.",
                 url_for("releases.show", project=project, version=release.version))


# --- the release page ------------------------------------------------------------------------

@bp.get("/releases/<project>/<version>")
@login_required
def show(project: str, version: str) -> Any:
    """One release: facts, changelog (optionally since another release), deploys, decisions."""
    page = read.release_page(get_project(project), version, since=request.args.get("since") or None,
                             actor=current_user)
    return render_template("releases/show.html", page=page, project=page.project,
                           release=page.release,
                           retry=retry_svc.offer(page.project, page.release, current_user)), page.status


@bp.get("/releases/<project>/<version>/changelog.md")
@login_required
def changelog_md(project: str, version: str) -> Any:
    """The release's changelog as a Markdown file."""
    proj = get_project(project)
    export = read.changelog_export(proj, version, since=request.args.get("since") or None)
    text = cl.to_markdown(export.changelog, title=export.title,
                          issue_url_template=proj.issue_url_template or None,
                          pr_url_template=proj.pr_url_template or None)
    return Response(text, mimetype="text/markdown", headers={
        "Content-Disposition": f'attachment; filename="{export.filename}.md"'})


@bp.get("/releases/<project>/<version>/changelog.json")
@login_required
def changelog_json(project: str, version: str) -> Any:
    """The release's changelog as a JSON file."""
    proj = get_project(project)
    export = read.changelog_export(proj, version, since=request.args.get("since") or None)
    body = {"project": project, "version": export.release.version,
            "since": export.since.version if export.since else None,
            **cl.to_json(export.changelog, pr_url_template=proj.pr_url_template or None)}
    return Response(json.dumps(body, indent=2), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="{export.filename}.json"'})


@bp.get("/releases/<project>/<version>/changelog/team")
@login_required
def changelog_team(project: str, version: str) -> Any:
    """One team's whole part of the changelog ("show all"): the fragment for htmx, else a page."""
    proj = get_project(project)
    part = read.changelog_team(proj, version, request.args.get("team", ""),
                               since=request.args.get("since") or None)
    target = request.htmx.target if request.htmx else None
    element_id = target if target and _TEAM_ID.fullmatch(target) else "cl-team"
    if request.htmx and not request.htmx.history_restore_request:
        return render_block("releases/changelog_team.html", "team", project=proj, part=part,
                            element_id=element_id)
    return render_template("releases/changelog_team.html", project=proj, part=part,
                           element_id=element_id)


@bp.get("/releases/<project>/<version>/card")
@login_required
def card(project: str, version: str) -> Any:
    """One release's board card (a fragment)."""
    proj, release = svc.project_release(project, version)
    return render_template("board/_card.html", project=proj,
                           card=cards.card_for(proj, release, actor=current_user))


# --- live regions of the release page ---------------------------------------------------------

REGIONS = {"state": "release_state", "side": "release_side"}


@bp.get("/releases/<project>/<version>/regions/<name>")
@login_required
def region(project: str, version: str, name: str) -> Any:
    """One live region of the release page (`state`: head, facts, retry; `side`: deployments,
    decisions, hotfixes, jobs), re-fetched when the /events doorbell names the release."""
    block = REGIONS.get(name)
    if block is None:
        raise NotFound(f"The release page has no region {name!r}; there are state and side.")
    proj = get_project(project)
    page = regions.release_regions(proj, version, since=request.args.get("since") or None,
                                   actor=current_user)
    retry = retry_svc.offer(proj, page.release, current_user) if name == "state" else None
    return render_block("releases/show.html", block, page=page, project=proj, release=page.release,
                        retry=retry)


# --- deploy / promote ------------------------------------------------------------------------

@bp.get("/releases/<project>/<version>/promote")
@login_required
def promote(project: str, version: str) -> Any:
    """Before a deploy: from → to, the changelog between them, and what the gates say."""
    proj, release = svc.project_release(project, version)
    plan = cards.promote_plan(proj, release, request.args.get("env") or None, current_user)
    return render_page("releases/promote.html", "panel", project=proj, plan=plan)


@bp.post("/releases/<project>/<version>/deployments")
@login_required
def deploy(project: str, version: str) -> Any:
    """Ask for a deploy of the release to an environment (refusals come back as sentences)."""
    proj, release = svc.project_release(project, version)
    deployment = request_deploy(proj, release, request.form.get("env", ""), current_user,
                                rollback_reason=_text("rollback_reason"),
                                freeze_reason=_text("freeze_reason"))
    return _done(release, deployment.job,
                 f"Deploy of {release.version} to {deployment.environment.name} is queued.",
                 url_for("releases.job", job_id=deployment.job_id))


# --- go / no-go ------------------------------------------------------------------------------

@bp.get("/releases/<project>/<version>/decide")
@login_required
def decide_form(project: str, version: str) -> Any:
    """The go / no-go form for where the release runs now."""
    proj, release = svc.project_release(project, version)
    form = cards.decision_form(proj, release, request.args.get("env") or None, current_user)
    return render_page("releases/decide.html", "panel", project=proj, form=form)


@bp.post("/releases/<project>/<version>/decisions")
@login_required
def decide(project: str, version: str) -> Any:
    """Record a go or no-go, with a comment and bug keys."""
    proj, release = svc.project_release(project, version)
    bugs = [b for b in _BUG_SPLIT.split(request.form.get("bugs", "")) if b]
    decision = record_decision(proj, release, request.form.get("env", ""), current_user,
                               request.form.get("decision", ""), request.form.get("comment"), bugs)
    return _done(release, None,
                 f"{decision.decision} recorded for {release.version} in {decision.environment.name}.",
                 url_for("releases.show", project=project, version=release.version))


# --- hotfix ----------------------------------------------------------------------------------

@bp.get("/releases/<project>/<version>/hotfix")
@role_required(Role.ENGINEER)
def hotfix_form(project: str, version: str) -> Any:
    """The start-hotfix form, with the fix commits on main since the release to pick from."""
    proj = get_project(project)
    return render_page("releases/hotfix.html", "hotfix", project=proj,
                       form=read.hotfix_form(proj, version))


@bp.post("/releases/<project>/<version>/hotfixes")
@role_required(Role.ENGINEER)
def hotfix(project: str, version: str) -> Any:
    """Start a hotfix on the release's line: cherry-pick chosen commits, or tag the branch head."""
    proj = get_project(project)
    branch_head = request.form.get("mode") == "branch_head"
    # The candidate list is newest first; cherry-picks go oldest first, then the pasted SHAs.
    commits = [c.strip() for c in reversed(request.form.getlist("commits")) if c.strip()]
    commits += [c for c in _BUG_SPLIT.split(request.form.get("extra", "")) if c]
    release, _job = svc.hotfix(proj, version, current_user,
                               commits=None if branch_head else list(dict.fromkeys(commits)),
                               branch_head=branch_head, force_reason=_text("force_reason"))
    flash(f"Hotfix {release.version} started on {release.details.get('branch')}: "
          f"its job builds and tags it.", "success")
    target = url_for("releases.show", project=project, version=release.version)
    if request.htmx:
        return make_response("", redirect=target)
    return redirect(target)


# --- jobs ------------------------------------------------------------------------------------

@bp.get("/jobs/<int:job_id>")
@login_required
def job(job_id: int) -> Any:
    """A job's facts and its log, which streams live while the job runs and replays on reload."""
    row, lines = get_job(job_id)
    # A webhook or manual deploy's job ends at the hand-off: the page follows its deployment.
    return render_template("jobs/show.html", job=row, lines=lines, followed=stream_state(job_id),
                           last_seq=lines[-1].seq if lines else 0)


@bp.get("/jobs/<int:job_id>/facts")
@login_required
def job_facts(job_id: int) -> Any:
    """The job page's facts (status, times, deployment, error): its live region, re-fetched when
    the /events doorbell names the job."""
    facts = regions.job_facts(job_id)
    return render_block("jobs/show.html", "job_facts", job=facts.job, followed=facts.followed)


# --- adoption --------------------------------------------------------------------------------

@bp.get("/projects/<project>/adoption")
@login_required
def adoption(project: str) -> Any:
    """How the repository's existing tags were understood, and which release main would follow."""
    proj = get_project(project)
    return render_template("releases/adoption.html", project=proj, report=adoption_svc.adopt_report(proj))


# --- retrying a failed tag or hotfix job ------------------------------------------------------

@bp.post("/releases/<project>/<version>/retry")
@role_required(Role.ENGINEER)
def retry(project: str, version: str) -> Any:
    """Retry the release's failed tag or hotfix job: the same version and tag, a new job."""
    proj, release = svc.project_release(project, version)
    release, job = retry_svc.retry(proj, release, current_user)
    work = "builds and tags" if job.kind == "hotfix" else "tags"
    message = f"Retrying {release.version}: job #{job.id} {work} {release.tag}."
    if request.htmx:
        queued = retry_svc.RetryOffer(release=release, job=None, error="", allowed=True, queued=job)
        return make_response(render_block("releases/show.html", "retry", project=proj, release=release,
                                          retry=queued, message=message), trigger=CHANGED)
    flash(message, "success")
    return redirect(url_for("releases.show", project=project, version=release.version))
