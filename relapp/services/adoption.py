"""Adoption: what relapp makes of a repository's existing tags, and recording them as releases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from semver import Version
from sqlalchemy import select

from .. import gitops
from ..domain import versioning as vs
from ..extensions import db
from ..models import Project, Release, User, utcnow
from . import audit
from .projects import get_project
from .releases import _git_error, _locked, _plan_main, rules, workspace


@dataclass(frozen=True)
class AdoptionReport:
    recognised: list[dict[str, Any]]
    ignored: list[dict[str, Any]]
    unknown: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    main_follows: str | None
    main_next: str | None
    main_refusal: str | None


def _fresh_inventory(project: Project, ws: gitops.Workspace) -> vs.Inventory:
    ws.ensure()
    ws.fetch()
    return vs.inventory(ws.tags(), rules(project))


def adopt_report(project: Project) -> AdoptionReport:
    """What relapp makes of the repository's tags, and which release main would follow."""
    try:
        ws = workspace(project)
        with _locked(ws):
            inventory = _fresh_inventory(project, ws)
            head = ws.resolve(project.main_branch)
            merged = ws.tags_merged(head)
            plan = _plan_main(project, ws, inventory, head, merged, None, None)
    except gitops.GitError as exc:
        raise _git_error(exc) from None
    nxt, refusal = (plan[0], None) if isinstance(plan, tuple) else (None, plan)
    return AdoptionReport(
        recognised=[{"tag": c.name, "version": str(c.version), "commit": c.tag.sha, "rule": c.status.value}
                    for c in sorted(inventory.recognised, key=lambda c: (c.version, c.name))],
        ignored=[{"tag": c.name, "reason": c.reason} for c in inventory.ignored],
        unknown=[{"tag": c.name, "reason": c.reason} for c in inventory.unknown],
        conflicts=[{"version": str(c.version), "tags": [t.name for t in c.tags], "commits": list(c.shas)}
                   for c in inventory.conflicts],
        main_follows=str(nxt.previous) if nxt and nxt.previous else None,
        main_next=str(nxt.version) if nxt else None,
        main_refusal=refusal,
    )


def adopt_into_db(key: str, *, actor: User | str | None = "cli") -> list[Release]:
    """Record recognised stable tags as adopted releases (idempotent); conflicts stay for a person."""
    project = get_project(key)
    try:
        ws = workspace(project)
        with _locked(ws):
            inventory = _fresh_inventory(project, ws)
    except gitops.GitError as exc:
        raise _git_error(exc) from None
    known = set(db.session.scalars(select(Release.version).where(Release.project_id == project.id)))
    stable = sorted({c.version for c in inventory.recognised if c.version and not c.version.prerelease
                     and not inventory.is_conflicted(c.version)})
    created: list[Release] = []
    previous: Release | None = None
    for version in stable:
        existing = db.session.scalar(select(Release).where(Release.project_id == project.id, Release.version == str(version)))
        if existing is not None:
            previous = existing
            continue
        tag = min(inventory.tags_for(version), key=lambda c: (c.status != vs.TagStatus.CANONICAL, c.name))
        release = Release(project_id=project.id, version=str(version), major=version.major, minor=version.minor,
                          patch=version.patch, kind=vs.release_kind(version, previous and Version.parse(previous.version)),
                          source="adopted", tag=tag.name, sha=tag.tag.sha, state="tagged",
                          follows_id=previous.id if previous else None, tagged_at=utcnow(),
                          details={"adopted_from": tag.name, "rule": tag.status.value})
        db.session.add(release)
        db.session.flush()
        created.append(release)
        previous = release
    if created:
        audit.record(actor, "release.adopt", project_id=project.id, target=f"project:{project.key}",
                     after={"versions": [r.version for r in created]},
                     detail=f"{len(created)} existing tag(s) adopted; {len(known)} already known")
    db.session.commit()
    return created
