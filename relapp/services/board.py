"""Read models for the kanban: which column each release sits in, what its card shows, and what a
deploy or a decision from a card would do (from → to, the changelog between, the gates' answer)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..domain import changelog as cl
from ..domain import pipeline
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Deployment, Environment, Job, JobLogLine, Project, Release, User
from . import deployments as deploys
from . import releases as rel
from .projects import get_environment

# Progress printed by deploy scripts as "[2/4] ..." or "step 2/4: ...".
_PROGRESS_RE = re.compile(r"(?:^\[|\bstep )(\d{1,4})/(\d{1,4})\b")


@dataclass
class Card:
    """Everything one release's card shows, and which actions it offers to the viewer."""

    release: Release
    stage: str
    qa_state: str
    bugs: list[str]
    deployed_in: list[str]
    active: Deployment | None
    job: Job | None
    next_env: str | None
    runs_in: list[str] = field(default_factory=list)
    current_env: str | None = None
    decision_here: pipeline.DecisionFacts | None = None
    failed: Deployment | None = None
    last_line: str | None = None
    progress: tuple[int, int] | None = None
    can_deploy: bool = False
    can_decide: bool = False
    can_hotfix: bool = False
    hidden: bool = False

    @property
    def progress_percent(self) -> int:
        """The running deploy's progress as a whole percentage (0 when unknown)."""
        if not self.progress or not self.progress[1]:
            return 0
        return min(100, round(100 * self.progress[0] / self.progress[1]))


@dataclass
class Column:
    """One stage of the pipeline: cut, then each environment."""

    name: str
    title: str
    cards: list[Card] = field(default_factory=list)
    hidden: int = 0


def may_decide(user: Any, env: Environment) -> bool:
    """True when the user's role may decide on releases in the environment."""
    role = getattr(user, "role", None)
    return role == "admin" or role in (env.decide_roles or ())


def _current_releases(project: Project) -> dict[str, int]:
    """Environment name → id of the release that runs there now (its latest successful deploy)."""
    result: dict[str, int] = {}
    for env in project.environments:
        current = deploys.current_deployment(env)
        if current is not None:
            result[env.name] = current.release_id
    return result


def _last_lines(job_ids: list[int]) -> dict[int, str]:
    """The newest log line of each of these jobs (one small query per running job)."""
    found: dict[int, str] = {}
    for job_id in job_ids:
        line = db.session.scalar(select(JobLogLine.line).where(JobLogLine.job_id == job_id)
                                 .order_by(JobLogLine.seq.desc()).limit(1))
        if line is not None:
            found[job_id] = line
    return found


def _progress(line: str | None) -> tuple[int, int] | None:
    if not line:
        return None
    match = _PROGRESS_RE.search(line)
    if match is None:
        return None
    done, total = int(match.group(1)), int(match.group(2))
    return (done, total) if 0 < total and done <= total else None


def card_for(project: Project, release: Release, *, actor: Any = None,
             current: dict[str, int] | None = None, job: Job | None = None,
             last_lines: dict[int, str] | None = None) -> Card:
    """One release's card: its stage, QA state, bugs, running work and the viewer's actions."""
    envs = list(project.environments)
    current = _current_releases(project) if current is None else current
    succeeded = {d.environment_id for d in release.deployments if d.status == "succeeded"}
    stage = pipeline.stage_of((env.name, env.id in succeeded) for env in envs)
    facts = deploys.decision_facts(list(release.decisions))
    first = envs[0].name if envs else ""
    qa = pipeline.qa_state(facts, first) if envs else "pending"
    latest_qa = pipeline.current_decision(facts, first) if envs else None
    bugs = list(latest_qa.bugs) if latest_qa and latest_qa.decision == "no-go" else []
    active = next((d for d in release.deployments if d.status in deploys.ACTIVE), None)
    if job is None and release.state != "tagged":
        job = db.session.scalar(select(Job).where(Job.release_id == release.id,
                                                  Job.kind.in_(("tag_release", "hotfix")))
                                .order_by(Job.id.desc()))
    names = [env.name for env in envs]
    position = names.index(stage) if stage in names else -1
    next_env = names[position + 1] if position + 1 < len(names) else None
    runs_in = [env.name for env in envs if current.get(env.name) == release.id]
    current_env = runs_in[-1] if runs_in else None
    decision_here = pipeline.current_decision(facts, current_env) if current_env else None
    # A failed deploy is worth a retry only while nothing newer happened to this release there.
    failed = None
    latest_per_env: dict[int, Deployment] = {}
    for deployment in release.deployments:
        latest_per_env[deployment.environment_id] = deployment
    for env in envs:
        latest = latest_per_env.get(env.id)
        if latest is not None and latest.status == "failed":
            failed = latest
    last_line = None
    if active is not None and active.job_id is not None:
        lines = last_lines if last_lines is not None else _last_lines([active.job_id])
        last_line = lines.get(active.job_id)
    by_name = {env.name: env for env in envs}
    authenticated = actor is not None and getattr(actor, "is_authenticated", True)
    can_deploy = bool(authenticated and next_env and deploys.may_deploy(actor, by_name[next_env]))
    can_decide = bool(authenticated and current_env and may_decide(actor, by_name[current_env]))
    role = getattr(actor, "role", None) if authenticated else None
    can_hotfix = role in ("engineer", "release", "admin") and release.state == "tagged"
    return Card(release=release, stage=stage, qa_state=qa, bugs=bugs,
                deployed_in=[env.name for env in envs if env.id in succeeded],
                active=active, job=job, next_env=next_env, runs_in=runs_in,
                current_env=current_env, decision_here=decision_here, failed=failed,
                last_line=last_line, progress=_progress(last_line), can_deploy=can_deploy,
                can_decide=can_decide, can_hotfix=can_hotfix)


def board(project: Project, *, actor: Any = None, limit: int = 60,
          show_all: bool = False) -> list[Column]:
    """Columns cut, then each environment in order, with the cards of the releases that matter.

    A release is retired from the board (unless `show_all`) when a later-made, higher release
    reached the same stage or a further one, and nothing about it is live: it runs nowhere,
    has no deploy in flight or failed, and its tag job is done.
    """
    columns = [Column("cut", "Cut")] + [Column(env.name, env.name.upper())
                                        for env in project.environments]
    by_name = {column.name: column for column in columns}
    rank = {column.name: index for index, column in enumerate(columns)}
    releases = db.session.scalars(
        select(Release).where(Release.project_id == project.id)
        .options(selectinload(Release.deployments), selectinload(Release.decisions),
                 selectinload(Release.created_by))
        .order_by(Release.major.desc(), Release.minor.desc(), Release.patch.desc(),
                  Release.id.desc())
        .limit(limit)).all()
    current = _current_releases(project)
    pending_ids = [r.id for r in releases if r.state != "tagged"]
    jobs: dict[int, Job] = {}
    if pending_ids:
        for job in db.session.scalars(select(Job).where(
                Job.release_id.in_(pending_ids), Job.kind.in_(("tag_release", "hotfix")))
                .order_by(Job.id)):
            if job.release_id is not None:
                jobs[job.release_id] = job  # the newest wins
    active_jobs = [d.job_id for r in releases for d in r.deployments
                   if d.status in deploys.ACTIVE and d.job_id is not None]
    lines = _last_lines(active_jobs)
    # (rank, id) of tagged releases seen so far, newest version first.
    seen: list[tuple[int, int]] = []
    for release in releases:
        card = card_for(project, release, actor=actor, current=current,
                        job=jobs.get(release.id), last_lines=lines)
        column = by_name.get(card.stage, columns[0])
        here = rank.get(card.stage, 0)
        live = bool(card.runs_in or card.active or card.failed or release.state != "tagged")
        superseded = any(r >= here and i > release.id for r, i in seen)
        if release.state == "tagged":
            seen.append((here, release.id))
        if superseded and not live and not show_all:
            column.hidden += 1
            continue
        column.cards.append(card)
    return columns


def project_summary(project: Project) -> dict[str, Any]:
    """Small facts shown above the board."""
    return {"key": project.key, "name": project.name,
            "environments": [e.name for e in project.environments]}


# --- what a deploy from a card would do ------------------------------------------------------

@dataclass
class PromotePlan:
    """A deploy as the user sees it before confirming: from → to, the changes, the gates."""

    release: Release
    env: Environment
    current: Release | None
    direction: str  # first | upgrade | rollback | redeploy
    changelog: cl.Changelog | None
    changelog_title: str
    changelog_error: str | None
    refusals: list[pipeline.Refusal]
    notes: list[str]
    needs_rollback_reason: bool
    needs_freeze_reason: bool

    @property
    def allowed(self) -> bool:
        """True when nothing but the reasons the form asks for stands in the way."""
        return not self.refusals


def promote_plan(project: Project, release: Release, env_name: str, actor: User) -> PromotePlan:
    """What deploying `release` to `env_name` would change and whether the gates let it through."""
    env = get_environment(project, env_name)
    if release.project_id != project.id:
        raise ServiceError(f"{release.version} is not a release of {project.key}.", status=404)
    running = deploys.current_deployment(env)
    current = running.release if running else None
    mine, theirs = deploys.version_of(release), deploys.version_of(current) if current else None
    if theirs is None:
        direction = "first"
    elif mine > theirs:
        direction = "upgrade"
    elif mine < theirs:
        direction = "rollback"
    else:
        direction = "redeploy"
    log: cl.Changelog | None = None
    error: str | None = None
    title = ""
    try:
        if direction == "upgrade" and current is not None:
            log, _ = rel.changelog(project, release, since=current.version)
            title = f"What {env.name} gets: {current.version} → {release.version}"
        elif direction == "rollback" and current is not None:
            log, _ = rel.changelog(project, current, since=release.version)
            title = f"What leaves {env.name}: changes in {current.version} since {release.version}"
        elif direction == "first":
            log, start = rel.changelog(project, release)
            title = (f"Nothing runs in {env.name} yet; {release.version}'s changes"
                     + (f" since {start.version}" if start else ""))
    except ServiceError as exc:
        error = exc.detail
    verdict = deploys.deploy_verdict(release, env, actor)
    refusals = [r for r in verdict.reasons if r.code != "rollback-needs-reason"]
    needs_freeze = False
    if env.frozen and release.kind == "hotfix":
        # The form asks for the freeze reason; only then is it a refusal.
        refusals = [r for r in refusals if r.code != "frozen"]
        needs_freeze = True
    return PromotePlan(release=release, env=env, current=current, direction=direction,
                       changelog=log, changelog_title=title, changelog_error=error,
                       refusals=refusals, notes=list(verdict.notes),
                       needs_rollback_reason=direction == "rollback",
                       needs_freeze_reason=needs_freeze)


@dataclass
class DecisionForm:
    """The go / no-go form of a card: where, what counts there now, and the choices."""

    release: Release
    env: Environment | None
    environments: list[Environment]
    latest: pipeline.DecisionFacts | None
    allowed: bool


def decision_form(project: Project, release: Release, env_name: str | None,
                  actor: User) -> DecisionForm:
    """The decision form for `release`, in `env_name` or where it currently runs."""
    current = _current_releases(project)
    runs_in = [env for env in project.environments if current.get(env.name) == release.id]
    if env_name:
        env: Environment | None = get_environment(project, env_name)
    else:
        env = runs_in[-1] if runs_in else None
    facts = deploys.decision_facts(list(release.decisions))
    latest = pipeline.current_decision(facts, env.name) if env is not None else None
    return DecisionForm(release=release, env=env, environments=runs_in or list(project.environments),
                        latest=latest, allowed=env is not None and may_decide(actor, env))
