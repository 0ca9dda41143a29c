"""Releases: adopting existing tags, cutting from main, hotfixes on a line, changelogs.

Requests resolve and compute under the project's clone lock (so two people asking at once are
served one after the other), allocate the version in the database under its unique constraint,
commit, and only then hand the git work (tag, cherry-pick, push) to the worker.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from semver import Version
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from .. import gitops
from ..domain import changelog as cl
from ..domain import versioning as vs
from ..domain.pipeline import Role
from ..exceptions import Conflict, Forbidden, NotFound, ServiceError, Unavailable
from ..extensions import db
from ..models import Job, Project, Release, User
from . import audit
from .accounts import has_role
from .projects import get_project
from .queue import create_job, dispatch

log = logging.getLogger(__name__)

ALLOCATION_ATTEMPTS = 5


# --- the project's clone and its rules ---------------------------------------------------

def workspace(project: Project) -> gitops.Workspace:
    """relapp's own clone of the project's remote."""
    folder = Path(current_app.config["RELAPP_REPOS_DIR"]) / project.key
    folder.parent.mkdir(parents=True, exist_ok=True)
    return gitops.Workspace(folder, project.remote_url, timeout=current_app.config["RELAPP_GIT_TIMEOUT"],
                            credentials_env=project.remote_credentials_env)


def rules(project: Project) -> vs.TagRules:
    """The project's tag template, its legacy rules (the built-in forms unless configured) and
    its ignore patterns."""
    legacy = vs.DEFAULT_LEGACY if project.legacy_tags is None else tuple(project.legacy_tags)
    return vs.TagRules(template=project.tag_template, legacy=legacy, ignore=tuple(project.ignore_tags or ()))


def teams(project: Project) -> list[cl.Team]:
    return [cl.Team(team.name, tuple(team.paths)) for team in project.teams]


def branch_name(project: Project, version: Version) -> str:
    """The line's release branch, e.g. release/1.4."""
    return project.release_branch_template.format(major=version.major, minor=version.minor)


def _git_error(exc: gitops.GitError) -> ServiceError:
    if isinstance(exc, gitops.UnsafeName):
        return ServiceError(str(exc), code="unsafe_name")
    if isinstance(exc, gitops.WorkspaceBusy):
        return Unavailable("The project's repository is busy with another job; try again in a moment.",
                           code="repository_busy")
    return ServiceError(f"git: {exc}", status=502, code="git_error")


def _locked(ws: gitops.Workspace) -> Any:
    """The clone's lock, taken with no database transaction open: the lock order is always
    clone first, then database, so a request and a job can never wait on each other."""
    db.session.commit()
    return ws.lock()


# A preview or a page answers from a fetch at most this old.
FETCH_MAX_AGE = 30.0


def read_clone(project: Project) -> tuple[gitops.Workspace, str | None]:
    """The project's clone for reading, fetched if its last fetch is older than FETCH_MAX_AGE,
    and why that fetch failed (None when it did not).

    No clone lock is taken once the clone exists: git reads are safe while a job tags or a
    fetch writes refs, so a read never waits behind another request's fetch or a job. A fetch
    that hangs ends at the configured git timeout; one already running is not waited for; a
    failed one leaves the reader with what the last fetch brought.
    """
    ws = workspace(project)
    if not ws.exists():
        with _locked(ws):
            if not ws.exists():
                ws.ensure()
                ws.fetch()
        return ws, None
    try:
        ws.fetch_if_older(FETCH_MAX_AGE)
    except gitops.GitError as exc:
        log.warning("project %s: fetch failed, reading the clone as it is: %s", project.key, exc)
        return ws, str(exc)
    return ws, None


@contextmanager
def _clone_to_read(project: Project) -> Iterator[gitops.Workspace]:
    """The project's clone for reading (see read_clone), git's failures turned into ServiceErrors."""
    try:
        yield read_clone(project)[0]
    except gitops.GitError as exc:
        raise _git_error(exc) from None


# --- lookups and JSON ---------------------------------------------------------------------

def parse_version(text: str) -> Version:
    """A version from a URL or a body, or a 400 with a sentence."""
    try:
        return Version.parse(str(text).removeprefix("v"))
    except (ValueError, TypeError):
        raise ServiceError(f"'{str(text)[:64]}' is not a version like 1.4.0.", code="invalid_version") from None


def get_release(project: Project, version: str) -> Release:
    """The project's release with this version, or NotFound."""
    parsed = parse_version(version)
    release = db.session.scalar(select(Release).where(Release.project_id == project.id,
                                                      Release.version == str(parsed)))
    if release is None:
        raise NotFound(f"Project {project.key} has no release {parsed}.")
    return release


def project_release(key: str, version: str) -> tuple[Project, Release]:
    """The project with this key and its release with this version (a URL's pair), or NotFound."""
    project = get_project(key)
    return project, get_release(project, version)


def db_versions(project: Project, at_least: Version | None = None) -> list[Version]:
    """The versions the database holds for the project (tagged, pending or failed): every one,
    or those on the line of `at_least` and above (an indexed range on (major, minor), so a cut
    at 100k releases reads the few lines above its previous release, not the whole history)."""
    query = select(Release.version).where(Release.project_id == project.id)
    if at_least is not None:
        query = query.where(tuple_(Release.major, Release.minor) >= (at_least.major, at_least.minor))
    return [Version.parse(v) for v in db.session.scalars(query)]


def list_releases(project: Project, limit: int = 50) -> list[Release]:
    """The project's releases, newest version first."""
    return list(db.session.scalars(select(Release).where(Release.project_id == project.id)
                                   .order_by(Release.major.desc(), Release.minor.desc(),
                                             Release.patch.desc()).limit(limit)))


@dataclass(frozen=True)
class ReleaseDetails:
    """One release with what happened to it: its later hotfixes, its jobs and, for a tagged
    hotfix when asked, whether each fix is on main too."""

    release: Release
    hotfixes: list[Release]
    jobs: list[Job]
    fixes_on_main: dict[str, str] | None


def release_details(project: Project, version: str, *, fixes: bool = True) -> ReleaseDetails:
    """The project's release `version` with its hotfixes and jobs (NotFound when unknown)."""
    release = get_release(project, version)
    jobs = list(db.session.scalars(select(Job).where(Job.release_id == release.id).order_by(Job.id)))
    on_main = None
    if fixes and release.kind == "hotfix" and release.state == "tagged":
        on_main = fixes_on_main(project, release)
    return ReleaseDetails(release, hotfixes_of(release), jobs, on_main)


def hotfixes_of(release: Release) -> list[Release]:
    """Later releases on the same line (X.Y.Z with Z above this one's)."""
    return list(db.session.scalars(select(Release).where(
        Release.project_id == release.project_id, Release.major == release.major,
        Release.minor == release.minor, Release.patch > release.patch).order_by(Release.patch)))


# --- cutting from main --------------------------------------------------------------------

@dataclass(frozen=True)
class MainPlan:
    """What a cut from `sha` would make, or why it is refused (then `refusal` is set)."""

    sha: str
    nxt: vs.NextVersion | None
    commits: list[Any]
    refusal: vs.Refusal | None
    understanding: vs.Understanding
    baseline_confirmed: bool = False


def plan_main(project: Project, ws: gitops.Workspace, inventory: vs.Inventory, sha: str, merged: set[str],
              requested: vs.Bump | None = None, reason: str | None = None, *,
              confirm_baseline: bool = False) -> MainPlan:
    """Decide the version a cut from `sha` gets, refusing to guess.

    relapp starts at the configured baseline only when the repository has no tag that looks
    like a version, or when an admin confirms it (`confirm_baseline`). Tags it cannot read, or
    releases that exist but none reachable from `sha`, are refused with a sentence instead.
    """
    understanding = inventory.understanding()
    unread = understanding.refusal()
    reachable = list(inventory.versions_of(merged))
    previous = vs.previous_release(reachable)
    # The next version is a bump of the previous release; it looks only upwards from its line
    # (lines already owned, higher versions elsewhere), so the database's versions below that
    # line cannot change it. Without a previous release every version counts (is there any?).
    existing = set(inventory.versions()) | set(db_versions(project, previous))
    refusal: vs.Refusal | None = None
    if unread:
        refusal = vs.Refusal("tags_not_understood", unread)
    elif previous is None and inventory.stable_versions():
        highest = inventory.stable_versions()[-1]
        refusal = vs.Refusal(
            "no_reachable_release",
            f"No release is reachable from this commit, but {highest} and others exist on other branches; "
            "merge the release branch back, fix the tag rules on the adoption page, or have an admin "
            "confirm starting from the baseline.")
    if refusal is not None and not confirm_baseline:
        return MainPlan(sha, None, [], refusal, understanding)
    overridden = refusal is not None
    if overridden and previous is None:
        # Confirmed by an admin: the unread or unreachable tags are set aside on purpose.
        existing = set(db_versions(project))
    exclude = [t.tag.sha for t in inventory.tags_for(previous)] if previous else []
    commits = ws.commits(sha, exclude) if exclude or previous is None else []
    try:
        nxt = vs.next_main_version(reachable=reachable, existing=existing, commits=commits, requested=requested,
                                   reason=reason, baseline=Version.parse(project.baseline_version))
    except vs.Refusal as exc:
        return MainPlan(sha, None, commits, exc, understanding)
    return MainPlan(sha, nxt, commits, None, understanding, baseline_confirmed=overridden)


def _plan_main(project: Project, ws: gitops.Workspace, inventory: vs.Inventory, sha: str,
               merged: set[str], requested: vs.Bump | None, reason: str | None) -> tuple[vs.NextVersion, list[Any]] | str:
    """plan_main as (next version, commits), or the refusal's sentence."""
    plan = plan_main(project, ws, inventory, sha, merged, requested, reason)
    if plan.nxt is None:
        assert plan.refusal is not None
        return plan.refusal.message
    return plan.nxt, plan.commits


def _refused(plan: MainPlan) -> ServiceError:
    assert plan.refusal is not None
    extra: dict[str, Any] = {}
    if plan.refusal.code in ("tags_not_understood", "no_reachable_release"):
        extra["see"] = "adoption"
    return Conflict(plan.refusal.message, code=plan.refusal.code, **extra)


@dataclass(frozen=True)
class Preview:
    """The release a cut from `ref` would make, before anything is written."""

    ref: str
    sha: str
    version: Version
    tag: str
    previous: Version | None
    previous_tag: str | None
    commit_count: int
    bump: str
    why: str
    notes: tuple[str, ...]
    fetched_at: float | None


def _why(nxt: vs.NextVersion, commit_count: int) -> str:
    since = f"since {nxt.previous}" if nxt.previous else "in the history"
    n = f"{commit_count} commit{'s' if commit_count != 1 else ''}"
    if nxt.bump == "initial":
        return f"First release: no version tag exists, so relapp starts at the baseline {nxt.version}."
    if nxt.breaking_commits:
        shas = ", ".join(s[:7] for s in nxt.breaking_commits[:5])
        more = f" and {len(nxt.breaking_commits) - 5} more" if len(nxt.breaking_commits) > 5 else ""
        return f"Major: {n} {since}, with breaking changes in {shas}{more}."
    if nxt.bump == "major":
        return f"Major, as asked: {n} {since}, none marked breaking."
    return f"Minor: {n} {since}, none marked breaking."


def _on_main(project: Project, ws: gitops.Workspace, ref: str) -> str:
    """The commit `ref` names, which must be on the main branch (releases are cut from it)."""
    sha = ws.resolve(ref)
    if not ws.is_ancestor(sha, ws.resolve(project.main_branch)):
        raise Conflict(f"{ref} ({sha[:10]}) is not on {project.main_branch}: releases are cut from "
                       f"{project.main_branch}; to ship a fix on a released line, start a hotfix.",
                       code="not_on_main")
    return sha


def preview(project: Project, ref: str | None = None) -> Preview:
    """The version, tag, previous release and commit count a cut from `ref` (default: main) would
    get, from a fetch at most FETCH_MAX_AGE old; a refusal is raised as the cut would raise it."""
    ref = project.main_branch if ref is None else ref
    try:
        gitops.validate_revision(ref)
        ws, fetch_error = read_clone(project)
        sha = _on_main(project, ws, ref)
        inventory = vs.inventory_of(ws, rules(project))
        plan = plan_main(project, ws, inventory, sha, ws.tags_merged(sha))
    except gitops.GitError as exc:
        raise _git_error(exc) from None
    if plan.nxt is None:
        raise _refused(plan)
    nxt = plan.nxt
    previous_tag = None
    if nxt.previous is not None:
        tags = inventory.tags_for(nxt.previous)
        previous_tag = min(tags, key=lambda c: (c.status != vs.TagStatus.CANONICAL, c.name)).name if tags else None
    notes = nxt.notes
    if fetch_error:
        stale = f"The remote could not be reached just now ({fetch_error}); this preview is from the last fetch that worked."
        notes += (stale,)
    return Preview(ref=ref, sha=sha, version=nxt.version, tag=vs.format_tag(nxt.version, rules(project)),
                   previous=nxt.previous, previous_tag=previous_tag, commit_count=len(plan.commits),
                   bump=nxt.bump, why=_why(nxt, len(plan.commits)), notes=notes, fetched_at=ws.fetched_at())


def cut(project: Project, actor: User | None, *, ref: str | None = None, bump: str | None = None,
        reason: str | None = None, confirm_baseline: bool = False) -> tuple[Release, Job]:
    """Allocate the next version from main, record it, and queue its tag job.

    `confirm_baseline`: an admin's explicit word that relapp may start from the baseline even
    though tags it cannot read, or releases not reachable from `ref`, exist (audited).
    """
    if confirm_baseline and not (actor is not None and has_role(actor, Role.ADMIN)):
        raise Forbidden("Only an admin may confirm starting from the baseline.", code="baseline_needs_admin")
    requested = {None: None, "minor": vs.Bump.MINOR, "major": vs.Bump.MAJOR}.get(bump, "bad")
    if requested == "bad":
        raise ServiceError("'bump' is 'minor' or 'major'; releases from main are never patch bumps "
                           "(patches belong to hotfixes).", code="invalid_bump")
    if reason is not None and len(reason) > 2000:
        raise ServiceError("A reason is at most 2000 characters.", code="invalid_reason")
    ref = project.main_branch if ref is None else ref
    try:
        gitops.validate_revision(ref)
        ws = workspace(project)
        with _locked(ws):
            ws.ensure()
            ws.fetch()
            sha = _on_main(project, ws, ref)
            inventory = vs.inventory_of(ws, rules(project))
            merged = ws.tags_merged(sha)
            plan = plan_main(project, ws, inventory, sha, merged, requested, reason,  # type: ignore[arg-type]
                             confirm_baseline=confirm_baseline)
            if plan.nxt is None:
                raise _refused(plan)
            nxt, commits = plan.nxt, plan.commits
            if plan.baseline_confirmed:
                u = plan.understanding
                audit.record(actor, "release.baseline_confirmed", project_id=project.id,
                             target=f"project:{project.key}",
                             after={"version": str(nxt.version), "tags_not_understood": u.not_understood,
                                    "version_like_tags": u.version_like},
                             detail=f"Started from the baseline {project.baseline_version} by an admin's decision.")
            return _allocate(project, actor, nxt, sha, kind=vs.release_kind(nxt.version, nxt.previous),
                             reason=reason, details={"ref": ref, "commits": len(commits), "bump": nxt.bump,
                                                     "breaking_commits": list(nxt.breaking_commits),
                                                     "notes": list(nxt.notes),
                                                     "baseline_confirmed": plan.baseline_confirmed})
    except gitops.GitError as exc:
        raise _git_error(exc) from None


def _allocate(project: Project, actor: User | None, nxt: vs.NextVersion, sha: str | None, *, kind: str,
              reason: str | None, details: dict[str, Any], base: Release | None = None,
              job_kind: str = "tag_release") -> tuple[Release, Job]:
    version = nxt.version
    follows = None
    if nxt.previous is not None:
        follows = db.session.scalar(select(Release).where(Release.project_id == project.id,
                                                          Release.version == str(nxt.previous)))
    tag = vs.format_tag(version, rules(project))
    details = {**details, "follows": str(nxt.previous) if nxt.previous else None}
    release = Release(project_id=project.id, version=str(version), major=version.major, minor=version.minor,
                      patch=version.patch, kind=kind, source="cut", tag=tag, sha=sha, state="pending",
                      follows_id=follows.id if follows else None, base_id=base.id if base else None,
                      reason=reason, details=details, created_by_id=actor.id if actor else None)
    db.session.add(release)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"Version {version} was just taken by someone else; try again.", code="version_taken") from None
    job = create_job(job_kind, project_id=project.id, release_id=release.id,
                     payload={"release_id": release.id}, requested_by=actor)
    audit.record(actor or "relapp", "release.cut" if job_kind == "tag_release" else "release.hotfix",
                 project_id=project.id, target=f"release:{project.key}/{version}",
                 after={"version": str(version), "tag": tag, "commit": sha, "kind": kind,
                        "follows": str(nxt.previous) if nxt.previous else None},
                 detail=reason or "")
    db.session.commit()
    dispatch(job)
    return release, job


# --- hotfixes -----------------------------------------------------------------------------

def hotfix(project: Project, base_version: str, actor: User | None, *, commits: list[str] | None = None,
           branch_head: bool = False, force_reason: str | None = None) -> tuple[Release, Job]:
    """Allocate the next patch on the line of `base_version` and queue the job that builds and tags it."""
    base = get_release(project, base_version)
    if base.state != "tagged" or not base.sha:
        raise Conflict(f"{base.version} is not tagged yet; a hotfix starts from a tagged release.", code="base_not_tagged")
    if bool(commits) == bool(branch_head):
        raise ServiceError("Give either 'commits' (a list of commit SHAs to cherry-pick) or "
                           "'branch_head': true, not both and not neither.", code="invalid_hotfix")
    if commits is not None and (not isinstance(commits, list) or len(commits) > 50
                                or not all(isinstance(c, str) for c in commits)):
        raise ServiceError("'commits' is a list of at most 50 commit SHAs.", code="invalid_hotfix")
    if force_reason is not None and (not isinstance(force_reason, str) or len(force_reason) > 2000):
        raise ServiceError("'force_reason' is a text of at most 2000 characters.", code="invalid_hotfix")
    base_v = Version.parse(base.version)
    branch = branch_name(project, base_v)
    try:
        for sha in commits or []:
            gitops.validate_revision(sha)
        gitops.validate_ref_name(branch, kind="branch")
        ws = workspace(project)
        with _locked(ws):
            ws.ensure()
            ws.fetch()
            inventory = vs.inventory_of(ws, rules(project))
            db_rows = list(db.session.scalars(select(Release).where(
                Release.project_id == project.id, Release.major == base_v.major, Release.minor == base_v.minor)))
            existing = set(inventory.versions()) | {Version.parse(r.version) for r in db_rows}
            # A failed hotfix keeps its number (never reused) but was never tagged: it is not
            # something the next hotfix must contain.
            failed = {r.version for r in db_rows if r.state == "failed"}
            line = sorted(v for v in existing if (v.major, v.minor) == (base_v.major, base_v.minor)
                          and not v.prerelease and str(v) not in failed)
            line_previous = line[-1] if line else None
            pending = {r.version for r in db_rows if r.state == "pending"}
            remote_branch = ws.remote_ref(f"refs/heads/{branch}")
            branch_sha = remote_branch[1] if remote_branch else None
            head = branch_sha or base.sha
            previous_sha = _sha_of(project, inventory, line_previous)
            if line_previous is None or str(line_previous) in pending:
                contained = True  # built before this one by the same line's job, in version order
            elif previous_sha is None:
                contained = False
            else:
                contained = ws.is_ancestor(previous_sha, head)
            if branch_head:
                if branch_sha is None:
                    raise Conflict(f"There is no branch {branch} on the remote yet: pick the commits to "
                                   f"cherry-pick instead.", code="no_branch")
                picked = ws.commits(branch_sha, [previous_sha or base.sha])
                nothing_new = not picked and str(line_previous) not in pending
                resolved: list[str] = []
            else:
                resolved = [ws.resolve(sha) for sha in commits or []]
                if len(set(resolved)) != len(resolved):
                    raise ServiceError("The same commit is listed twice.", code="invalid_hotfix")
                picked = ws.show(resolved)
                nothing_new = False
                already = [c for c in resolved if ws.is_ancestor(c, head)]
                if already:
                    raise Conflict(f"Commit {already[0][:10]} is already on {branch}; nothing to cherry-pick.",
                                   code="already_on_line")
            try:
                nxt = vs.next_hotfix_version(base=base_v, existing=existing, line_previous=line_previous,
                                             line_previous_contained=contained, commits=picked,
                                             force_reason=force_reason, nothing_new=nothing_new)
            except vs.Refusal as exc:
                raise Conflict(exc.message, code=exc.code) from None
            details = {"branch": branch, "mode": "branch_head" if branch_head else "cherry_pick",
                       "commits": resolved, "branch_head": branch_sha if branch_head else None,
                       "forced": force_reason, "notes": list(nxt.notes)}
            return _allocate(project, actor, nxt, branch_sha if branch_head else None, kind="hotfix",
                             reason=force_reason, details=details, base=base, job_kind="hotfix")
    except gitops.GitError as exc:
        raise _git_error(exc) from None


def _sha_of(project: Project, inventory: vs.Inventory, version: Version | None) -> str | None:
    if version is None:
        return None
    tags = inventory.tags_for(version)
    if tags:
        return tags[0].tag.sha
    return db.session.scalar(select(Release.sha).where(Release.project_id == project.id,
                                                       Release.version == str(version)))


# --- changelog ----------------------------------------------------------------------------

def previous_of(release: Release) -> Release | None:
    """The release this one's changelog starts from: the previous patch on its line for a hotfix,
    else the release it follows."""
    if release.kind == "hotfix":
        return db.session.scalar(select(Release).where(
            Release.project_id == release.project_id, Release.major == release.major,
            Release.minor == release.minor, Release.patch < release.patch, Release.state == "tagged")
            .order_by(Release.patch.desc()))
    return release.follows


def changelog(project: Project, release: Release, *, since: str | None = None) -> tuple[cl.Changelog, Release | None]:
    """What went into `release` since the release it follows (or since `since`), by reachability."""
    if not release.sha:
        raise Conflict(f"{release.version} has no commit yet: its job has not finished.", code="not_ready")
    start = get_release(project, since) if since else previous_of(release)
    if start is not None and not start.sha:
        raise Conflict(f"{start.version} has no commit yet.", code="not_ready")
    return _changelog_between(project, release.sha, start.sha if start else None), start


# A changelog is a function of two commits (immutable) and the project's team and issue rules:
# pages that show one (the release page, the promote panel, the environments page) take it from
# here instead of running git each time. Bounded per process; a rule change makes a new key.
CHANGELOG_CACHE_SIZE = 256
_changelogs: OrderedDict[tuple[Any, ...], cl.Changelog] = OrderedDict()
_changelogs_lock = threading.Lock()


def _changelog_between(project: Project, head: str, base: str | None) -> cl.Changelog:
    """The changelog of the commits reachable from `head` and not from `base`."""
    rules = teams(project)
    key = (project.id, head, base, project.issue_key_pattern, tuple(rules))
    with _changelogs_lock:
        cached = _changelogs.get(key)
        if cached is not None:
            _changelogs.move_to_end(key)
            return cached
    # It must exist before git runs to take the commits: a bad issue pattern (settings reject
    # one already) now fails before the git work instead of after it.
    builder = cl.ChangelogBuilder(rules, project.issue_key_pattern)
    with _clone_to_read(project) as ws:
        # Each commit is parsed as git writes it: the changelog is built during git's walk.
        ws.commits(head, [base] if base else [], on_commit=builder.add)
    built = builder.build()
    with _changelogs_lock:
        _changelogs[key] = built
        while len(_changelogs) > CHANGELOG_CACHE_SIZE:
            _changelogs.popitem(last=False)
    return built


def fixes_on_main(project: Project, release: Release) -> dict[str, str]:
    """For each fix of a hotfix, whether it is on main too (by the -x trailer, else by patch id)."""
    if release.kind != "hotfix" or not release.sha:
        return {}
    start = previous_of(release)
    with _clone_to_read(project) as ws:
        main = ws.resolve(project.main_branch)
        fixes = ws.commits(release.sha, [start.sha] if start and start.sha else [])
        origins = {c.sha: cl.parse_message(c.message).cherry_picked_from for c in fixes}
        on_main = {sha for sha in set(filter(None, origins.values()))
                   if gitops.is_sha(sha) and ws.is_ancestor(sha, main)}
        cherry = ws.cherry(main, release.sha)
    result = {}
    for fix in fixes:
        if origins[fix.sha] in on_main:
            result[fix.sha] = "on main (cherry-picked from it)"
        elif cherry.get(fix.sha):
            result[fix.sha] = "on main (same patch)"
        elif fix.sha not in cherry:
            result[fix.sha] = "on main (same commit)"
        else:
            result[fix.sha] = "missing on main: merge it back"
    return result
