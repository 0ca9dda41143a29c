"""One release's card: what it shows (stage, QA state, bugs, running work), which actions it
offers the viewer, and what each action would do before it is confirmed (deploy, go / no-go).

The board and the release page both show a card, so each rule (may it be promoted, retried,
decided on, hotfixed) is decided here once and the templates only read the answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ..domain import changelog as cl
from ..domain import pipeline
from ..domain.pipeline import Role
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Deployment, Environment, Job, JobLogLine, Project, Release, User
from . import deployments as deploys
from . import releases as rel
from .accounts import has_role
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
    # Of runs_in, environment name -> "unknown: last deploy abandoned" where a later deploy
    # stopped halfway, so what runs there is not known.
    unknown_in: dict[str, str] = field(default_factory=dict)
    current_env: str | None = None
    decision_here: pipeline.DecisionFacts | None = None
    failed: Deployment | None = None
    last_line: str | None = None
    progress: tuple[int, int] | None = None
    can_deploy: bool = False
    can_promote: bool = False
    can_retry: bool = False
    can_decide: bool = False
    can_hotfix: bool = False
    hidden: bool = False

    @property
    def progress_percent(self) -> int:
        """The running deploy's progress as a whole percentage (0 when unknown)."""
        if not self.progress or not self.progress[1]:
            return 0
        return min(100, round(100 * self.progress[0] / self.progress[1]))


def may_decide(user: Any, env: Environment) -> bool:
    """True when the user's role may decide on releases in the environment."""
    role = getattr(user, "role", None)
    return role == Role.ADMIN or role in (env.decide_roles or ())


def current_releases(project: Project) -> dict[str, int]:
    """Environment name → id of the release that runs there now (its latest successful deploy)."""
    result: dict[str, int] = {}
    for env in project.environments:
        current = deploys.current_deployment(env)
        if current is not None:
            result[env.name] = current.release_id
    return result


def newest_lines(job_ids: list[int]) -> dict[int, str]:
    """The newest log line of each of these jobs: one query on the (job_id, seq) index, run even
    for no jobs so a page's query count does not depend on what runs."""
    newest = (select(JobLogLine.job_id, func.max(JobLogLine.seq).label("seq"))
              .where(JobLogLine.job_id.in_(job_ids)).group_by(JobLogLine.job_id).subquery())
    rows = db.session.execute(select(JobLogLine.job_id, JobLogLine.line).join(
        newest, (JobLogLine.job_id == newest.c.job_id) & (JobLogLine.seq == newest.c.seq)))
    return {job_id: line for job_id, line in rows}


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
             last_lines: dict[int, str] | None = None, find_job: bool = True) -> Card:
    """One release's card: its stage, QA state, bugs, running work and the viewer's actions
    (`find_job=False`: the caller looked the tag jobs up already, `job` is all there is)."""
    envs = list(project.environments)
    current = current_releases(project) if current is None else current
    succeeded = {d.environment_id for d in release.deployments if d.status == "succeeded"}
    stage = pipeline.stage_of((env.name, env.id in succeeded) for env in envs)
    facts = deploys.decision_facts(list(release.decisions))
    first = envs[0].name if envs else ""
    qa = pipeline.qa_state(facts, first) if envs else "pending"
    latest_qa = pipeline.current_decision(facts, first) if envs else None
    bugs = list(latest_qa.bugs) if latest_qa and latest_qa.decision == "no-go" else []
    active = next((d for d in release.deployments if d.status in deploys.ACTIVE), None)
    if job is None and find_job and release.state != "tagged":
        job = db.session.scalar(select(Job).where(Job.release_id == release.id,
                                                  Job.kind.in_(("tag_release", "hotfix")))
                                .order_by(Job.id.desc()))
    names = [env.name for env in envs]
    position = names.index(stage) if stage in names else -1
    next_env = names[position + 1] if position + 1 < len(names) else None
    runs_in = [env.name for env in envs if current.get(env.name) == release.id]
    unknown_in = {env.name: f"unknown: {env.unknown_reason}" for env in envs
                  if env.name in runs_in and env.unknown_reason}
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
        lines = last_lines if last_lines is not None else newest_lines([active.job_id])
        last_line = lines.get(active.job_id)
    by_name = {env.name: env for env in envs}
    authenticated = actor is not None and getattr(actor, "is_authenticated", True)
    can_deploy = bool(authenticated and next_env and deploys.may_deploy(actor, by_name[next_env]))
    can_decide = bool(authenticated and current_env and may_decide(actor, by_name[current_env]))
    tagged = release.state == "tagged"
    can_hotfix = bool(authenticated and has_role(actor, Role.ENGINEER) and tagged)
    # Work goes out only from a tagged release with nothing of it in flight.
    idle = tagged and active is None
    return Card(release=release, stage=stage, qa_state=qa, bugs=bugs,
                deployed_in=[env.name for env in envs if env.id in succeeded],
                active=active, job=job, next_env=next_env, runs_in=runs_in,
                unknown_in=unknown_in,
                current_env=current_env, decision_here=decision_here, failed=failed,
                last_line=last_line, progress=_progress(last_line), can_deploy=can_deploy,
                can_promote=can_deploy and idle, can_retry=failed is not None and idle,
                can_decide=can_decide, can_hotfix=can_hotfix)


# --- what a deploy or a decision from a card would do -------------------------------------

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


def promote_plan(project: Project, release: Release, env_name: str | None,
                 actor: User) -> PromotePlan:
    """What deploying `release` to `env_name` (by default its next environment) would change and
    whether the gates let it through."""
    if release.project_id != project.id:
        raise ServiceError(f"{release.version} is not a release of {project.key}.", status=404)
    if not env_name:
        env_name = card_for(project, release).next_env
        if not env_name:
            raise ServiceError(f"{release.version} already reached the last environment; pick "
                               f"one with ?env= to redeploy or roll back.", code="missing_field")
    env = get_environment(project, env_name)
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
    current = current_releases(project)
    runs_in = [env for env in project.environments if current.get(env.name) == release.id]
    if env_name:
        env: Environment | None = get_environment(project, env_name)
    else:
        env = runs_in[-1] if runs_in else None
    facts = deploys.decision_facts(list(release.decisions))
    latest = pipeline.current_decision(facts, env.name) if env is not None else None
    return DecisionForm(release=release, env=env, environments=runs_in or list(project.environments),
                        latest=latest, allowed=env is not None and may_decide(actor, env))
