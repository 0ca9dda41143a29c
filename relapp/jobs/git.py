"""Git jobs: tag a cut release; build a hotfix (branch, cherry-pick -x, push) and tag it.

Both are idempotent, so a failed release can be retried with its own version
(services/release_retry.py): a tag already on the remote at the right commit counts as done, a
fix already on the line's branch with its -x trailer is not picked again, and a tag found at
another commit fails loudly; nothing is ever forced. Whatever stops a job marks its release
failed, with the sentence people see, so that the release page can offer the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from semver import Version
from sqlalchemy import select, update

from .. import gitops
from ..domain import changelog as cl
from ..extensions import db, in_write_transaction
from ..models import Job, Release, utcnow
from ..services import audit, train
from ..services.release_retry import instead
from ..services.releases import workspace
from . import JobFailed

logger = logging.getLogger(__name__)


def _save(release: Release, **values: Any) -> None:
    """Write release fields in a write transaction of their own, retried if the database refuses
    it (never on a stale read snapshot)."""
    in_write_transaction(_update_release, release.id, values)
    db.session.refresh(release)


def _update_release(release_id: int, values: dict[str, Any]) -> None:
    db.session.execute(update(Release).where(Release.id == release_id).values(**values))


def _mark_failed(release_id: int, action: str, sentence: str) -> None:
    """The release of a job that stopped is failed, unless something settled it meanwhile (a
    compare-and-set from pending); audited once, with the sentence the job ends with."""
    db.session.rollback()
    in_write_transaction(_fail_release, release_id, action, sentence)


def _fail_release(release_id: int, action: str, sentence: str) -> None:
    """One (retried) write transaction: the compare-and-set and its audit event, or neither."""
    changed = db.session.execute(update(Release).where(
        Release.id == release_id, Release.state == "pending").values(state="failed")).rowcount
    release = db.session.get(Release, release_id) if changed else None
    if release is not None:
        audit.record("relapp", action, project_id=release.project_id,
                     target=f"release:{release.project.key}/{release.version}", detail=sentence)


@contextmanager
def _fails_release(release_id: int, action: str) -> Iterator[None]:
    """Whatever stops the block (a JobFailed sentence, git, a crash) marks the release failed and
    goes on up to `jobs.run`, which fails the job."""
    try:
        yield
    except JobFailed as exc:
        _mark_failed(release_id, action, str(exc))
        raise
    except Exception as exc:
        _mark_failed(release_id, action, f"Unexpected error ({exc.__class__.__name__}); see the worker log.")
        raise


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
    except gitops.PushRejected as exc:
        raise JobFailed(f"The remote refused tag {release.tag}: {exc.reason}. Nothing was forced; once the "
                        f"remote accepts it, retry {release.version}.") from None
    except gitops.TagConflict as exc:
        raise JobFailed(f"Tag {release.tag} already exists at another commit ({exc.existing_sha[:10]}); "
                        f"relapp never moves a tag. Delete that tag if it is wrong and retry "
                        f"{release.version}, or {instead(release)}.") from None
    _save(release, state="tagged", tagged_at=utcnow())
    log(f"pushed annotated tag {release.tag} at {release.sha}")


def tag_release(job: Job, log: Any) -> None:
    """Create the annotated tag of a cut release on its commit and push it (never forced); then let
    the release train go on if this was its cut."""
    release_id = job.payload["release_id"]
    try:
        with _fails_release(release_id, "release.tag_failed"):
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
    with _fails_release(job.payload["release_id"], "release.hotfix_failed"):
        _make_hotfix(job, log)


def _make_hotfix(job: Job, log: Any) -> None:
    release = _release_of(job)
    if release.state == "tagged":
        log(f"{release.tag} is already built and tagged; nothing to do")
        return
    if release.state == "failed":
        raise JobFailed(f"{release.version} failed earlier (see its page); retry it from there.")
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
                except (JobFailed, gitops.GitError) as exc:
                    if isinstance(exc, gitops.WorkspaceBusy):
                        raise
                    _mark_failed(item.id, "release.hotfix_failed", str(exc))
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
        # A retry after someone resolved a conflict on the branch (cherry-pick -x, push), or after
        # a build that pushed the branch but stopped before its tag: those fixes are there already.
        there = _picked_since(ws, head, _line_floor(release, base.sha))
        todo = [sha for sha in commits if sha not in there]
        if len(todo) < len(commits):
            log(f"{len(commits) - len(todo)} fix(es) already on {branch} (by their -x trailer); not picked again")
        name, email = _tagger(job)
        try:
            new_head = ws.cherry_pick(head, todo, committer_name=name, committer_email=email)
        except gitops.CherryPickEmpty:
            new_head = _already_picked(ws, head, base.sha, commits)
            if new_head is None:
                raise
        except gitops.CherryPickConflict as exc:
            files = ", ".join(exc.files) or "unknown files"
            raise JobFailed(f"Cherry-picking {exc.commit[:10]} onto {branch} conflicts in {files}. "
                            f"The clone was cleaned up and nothing was pushed; cherry-pick it onto {branch} "
                            f"yourself (git cherry-pick -x), push, then retry {release.version}; or start a "
                            f"hotfix from the branch head.") from None
        if new_head != head:
            ws.push_branch_ff(branch, new_head, head)
            log(f"pushed {branch} → {new_head[:10]} ({len(commits)} fix(es), cherry-picked with -x)")
        _save(release, sha=new_head)
    _tag_and_push(ws, release, job, log)


def _picked_since(ws: gitops.Workspace, head: str, floor: str) -> set[str]:
    """The commits whose -x copies are on the branch since `floor` (one git log)."""
    return {origin for c in ws.commits(head, [floor])
            if (origin := cl.parse_message(c.message).cherry_picked_from)}


def _line_floor(release: Release, base_sha: str) -> str:
    """Where this hotfix's own fixes start on the branch: the commit of the line's newest tagged
    release below it, else its base's."""
    sha = db.session.scalar(select(Release.sha).where(
        Release.project_id == release.project_id, Release.major == release.major,
        Release.minor == release.minor, Release.patch < release.patch, Release.state == "tagged",
        Release.sha.is_not(None)).order_by(Release.patch.desc()).limit(1))
    return sha or base_sha


def _already_picked(ws: gitops.Workspace, head: str, base_sha: str, commits: list[str]) -> str | None:
    """A job whose fixes are all on the branch already (with their -x trailers) reuses its head."""
    return head if set(commits) <= _picked_since(ws, head, base_sha) else None


def sort_key(release: Release) -> Version:
    return Version.parse(release.version)
