"""Git jobs: tag a cut release; build a hotfix (branch, cherry-pick -x, push) and tag it.

Both are idempotent: a retried job that finds its work done carries on, and a tag found at
another commit fails loudly; nothing is ever forced.
"""

from __future__ import annotations

import logging
from typing import Any

from semver import Version
from sqlalchemy import select

from .. import gitops
from ..domain import changelog as cl
from ..extensions import db, write_transaction
from ..models import Job, Release, utcnow
from ..services import audit, train
from ..services.releases import workspace
from . import JobFailed

logger = logging.getLogger(__name__)


def _save(release: Release, **values: Any) -> None:
    """Write release fields in a fresh write transaction (never on a stale read snapshot)."""
    from sqlalchemy import update

    with write_transaction():
        db.session.execute(update(Release).where(Release.id == release.id).values(**values))
    db.session.refresh(release)


def _audit(release: Release, action: str, detail: str) -> None:
    with write_transaction():
        audit.record("relapp", action, project_id=release.project_id,
                     target=f"release:{release.version}", detail=detail)


def _tagger(job: Job) -> tuple[str, str]:
    user = job.requested_by
    if user is None:
        return "relapp", "relapp@localhost"
    return user.name, user.email or f"{user.username}@relapp.invalid"


def _tag_and_push(ws: gitops.Workspace, release: Release, job: Job, log: Any) -> None:
    name, email = _tagger(job)
    message = f"Release {release.version}\n\nCut with relapp by {name}."
    try:
        ref = ws.create_tag(release.tag, release.sha or "", message, name, email)
        ws.push([f"{ref}:{ref}"])
    except gitops.TagConflict as exc:
        _save(release, state="failed")
        _audit(release, "release.tag_failed", str(exc))
        raise JobFailed(f"Tag {release.tag} already exists at another commit ({exc.existing_sha[:10]}); "
                        "relapp never moves a tag. Settle it by hand, then cut again.") from None
    _save(release, state="tagged", tagged_at=utcnow())
    log(f"pushed annotated tag {release.tag} at {release.sha}")


def tag_release(job: Job, log: Any) -> None:
    """Create the annotated tag of a cut release on its commit and push it (never forced); then let
    the release train go on if this was its cut."""
    release_id = job.payload["release_id"]
    try:
        _tag_release(job, log)
    finally:
        _carry_on_train(release_id, log)


def _carry_on_train(release_id: int, log: Any) -> None:
    """Whatever the tag job's outcome: a train run waiting for this tag deploys it or says why not.

    The train's own trouble is the train's (recorded on its run), never this job's failure.
    """
    try:
        carried = train.after_cut(release_id)
    except Exception:
        db.session.rollback()
        logger.exception("the release train could not go on after tagging release %s", release_id)
        return
    if carried is not None:
        log(f"release train: {carried.detail}")


def _release_of(job: Job) -> Release:
    """The release the job is about, re-loaded; a job whose release was deleted fails."""
    release = db.session.get(Release, job.payload["release_id"])
    if release is None:
        raise JobFailed("The release of this job no longer exists.")
    return release


def _tag_release(job: Job, log: Any) -> None:
    release = _release_of(job)
    if release.state == "tagged":
        log(f"{release.tag} is already tagged; nothing to do")
        return
    ws = workspace(release.project)
    try:
        with ws.lock():
            log(f"fetching {gitops.redact_url(release.project.remote_url)}")
            ws.ensure()
            moved = ws.fetch().moved_tags
            if moved:
                log(f"warning: tags moved on the remote and were kept as they were: {', '.join(moved)}")
            _tag_and_push(ws, release, job, log)
    except gitops.GitError as exc:
        raise JobFailed(str(exc)) from None


def make_hotfix(job: Job, log: Any) -> None:
    """Build this hotfix (and any earlier pending one of its line first, so each contains the last)."""
    release = _release_of(job)
    if release.state == "tagged":
        log(f"{release.tag} is already built and tagged; nothing to do")
        return
    if release.state == "failed":
        raise JobFailed(f"{release.version} failed earlier; start a new hotfix.")
    ws = workspace(release.project)
    try:
        with ws.lock():
            ws.ensure()
            ws.fetch()
            line = db.session.scalars(select(Release).where(
                Release.project_id == release.project_id, Release.major == release.major,
                Release.minor == release.minor, Release.kind == "hotfix", Release.state == "pending",
                Release.patch <= release.patch).order_by(Release.patch)).all()
            for item in line:
                if item.id == release.id:
                    _build_one(ws, item, job, log)
                    continue
                try:  # an earlier fix of the line goes first, so this one contains it
                    _build_one(ws, item, job, log)
                except JobFailed as exc:
                    log(f"{item.version} failed ({exc}); going on without it")
    except gitops.GitError as exc:
        raise JobFailed(str(exc)) from None
    db.session.refresh(release)
    if release.state != "tagged":
        raise JobFailed(f"{release.version} could not be built; see the log.")


def _build_one(ws: gitops.Workspace, release: Release, job: Job, log: Any) -> None:
    details = dict(release.details or {})
    branch = details["branch"]
    base = release.base
    if base is None or not base.sha:
        raise JobFailed(f"{release.version} has no base release with a commit.")
    log(f"building {release.version} on {branch}")
    if details.get("mode") == "branch_head":
        if not release.sha:
            raise JobFailed(f"{release.version} has no branch head recorded.")
        _tag_and_push(ws, release, job, log)
        return
    if not release.sha:
        head = ws.hotfix_branch(branch, base.sha)
        commits = details.get("commits") or []
        name, email = _tagger(job)
        try:
            new_head = ws.cherry_pick(head, commits, committer_name=name, committer_email=email)
        except gitops.CherryPickEmpty:
            new_head = _already_picked(ws, head, base.sha, commits)
            if new_head is None:
                raise
        except gitops.CherryPickConflict as exc:
            _save(release, state="failed")
            _audit(release, "release.hotfix_failed", str(exc))
            files = ", ".join(exc.files) or "unknown files"
            raise JobFailed(f"Cherry-picking {exc.commit[:10]} onto {branch} conflicts in {files}. "
                            f"The clone was cleaned up; resolve the conflict on {branch} yourself and "
                            f"start a hotfix from the branch head.") from None
        if new_head != head:
            ws.push_branch_ff(branch, new_head, head)
            log(f"pushed {branch} → {new_head[:10]} ({len(commits)} fix(es), cherry-picked with -x)")
        _save(release, sha=new_head)
    _tag_and_push(ws, release, job, log)


def _already_picked(ws: gitops.Workspace, head: str, base_sha: str, commits: list[str]) -> str | None:
    """A retried job whose fixes are already on the branch (with their -x trailers) reuses its head."""
    on_branch = ws.commits(head, [base_sha])
    origins = {cl.parse_message(c.message).cherry_picked_from for c in on_branch}
    return head if all(sha in origins for sha in commits) else None


def sort_key(release: Release) -> Version:
    return Version.parse(release.version)
