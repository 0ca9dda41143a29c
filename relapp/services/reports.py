"""Read models for the manager pages: environments overview, release train, evidence, audit log."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from ..domain import changelog as cl
from ..exceptions import ServiceError
from ..extensions import db
from ..models import (
    ApiToken,
    Decision,
    Deployment,
    Environment,
    Job,
    Project,
    Release,
    User,
)
from . import releases as release_service
from .deployments import active_deployment, current_deployment

WEEK_SECONDS = 7 * 86400
TOP_ENTRIES = 5


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _plain_version(text: str | None) -> str:
    return (text or "").strip().removeprefix("v")


# -- environments -----------------------------------------------------------------------------


@dataclass
class Behind:
    """What the next environment does not run yet, compared with this one."""

    next_env: str
    next_version: str | None
    state: str  # same | ahead | behind | empty | unknown
    count: int = 0
    entries: list[cl.ChangelogEntry] = field(default_factory=list)
    error: str | None = None


@dataclass
class EnvRow:
    """One environment on the environments page."""

    env: Environment
    current: Deployment | None
    decision: Decision | None
    active: Deployment | None
    drift: str | None
    behind: Behind | None


def latest_decision(release: Release, env: Environment) -> Decision | None:
    """The decision that counts for a release in an environment: the latest one."""
    return db.session.scalar(select(Decision).where(
        Decision.release_id == release.id, Decision.environment_id == env.id)
        .order_by(Decision.created_at.desc(), Decision.id.desc()).limit(1))


def drift_of(env: Environment, current: Deployment | None) -> str | None:
    """'runs X, recorded Y' when the version the environment reports is not the recorded one."""
    if not env.observed_version:
        return None
    recorded = current.release.version if current else None
    if recorded is not None and _plain_version(env.observed_version) in (recorded, _plain_version(current.release.tag) if current else ""):
        return None
    return f"runs {env.observed_version}, recorded {recorded or 'nothing'}"


def _behind(project: Project, here: Deployment | None, nxt: Environment, there: Deployment | None) -> Behind:
    next_version = there.release.version if there else None
    if here is None:
        return Behind(nxt.name, next_version, "unknown")
    mine = here.release
    if there is None:
        return Behind(nxt.name, None, "empty")
    if there.release_id == mine.id:
        return Behind(nxt.name, next_version, "same")
    if _order(there.release) > _order(mine):
        return Behind(nxt.name, next_version, "ahead")
    result = Behind(nxt.name, next_version, "behind")
    try:
        log, _start = release_service.changelog(project, mine, since=there.release.version)
    except ServiceError as exc:
        result.error = exc.detail
        return result
    result.count = len(log.entries)
    result.entries = list(log.entries[:TOP_ENTRIES])
    return result


def environments_overview(project: Project) -> list[EnvRow]:
    """Per environment in promotion order: what runs, since when, by whom, its decision, lock,
    freeze, drift, any deploy in progress, and what the next environment lacks."""
    envs = list(project.environments)
    currents = [current_deployment(env) for env in envs]
    rows = []
    for index, env in enumerate(envs):
        current = currents[index]
        behind = None
        if index + 1 < len(envs):
            behind = _behind(project, current, envs[index + 1], currents[index + 1])
        rows.append(EnvRow(
            env=env, current=current,
            decision=latest_decision(current.release, env) if current else None,
            active=active_deployment(env), drift=drift_of(env, current), behind=behind))
    return rows


# -- release train ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StageSpan:
    """Time a release spent in one stage; `open` when it is still there now."""

    stage: str
    seconds: float
    open: bool = False


@dataclass
class ReleaseTiming:
    """One cut release on the train: when it was cut, when it reached each environment."""

    release: Release
    cut_at: datetime
    reached: dict[str, datetime]
    stages: list[StageSpan]
    lead_seconds: float | None
    hotfixes: int
    superseded: bool

    @property
    def total_seconds(self) -> float:
        """The length of its stacked bar: every stage span, open ones included."""
        return sum(span.seconds for span in self.stages)


@dataclass(frozen=True)
class WeekCount:
    """Successful deploys per environment in one week (Monday, project time zone)."""

    week: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """All deploys that week."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class Gap:
    """Days between one main cut and the previous one."""

    version: str
    cut_at: datetime
    days: float


@dataclass
class TrainReport:
    """Cadence and lead times of one project's release train."""

    project: Project
    envs: list[str]
    releases: list[ReleaseTiming]
    weeks: list[WeekCount]
    gaps: list[Gap]
    median_lead_days: float | None
    median_gap_days: float | None
    within_week: int
    reached_last: int
    cron: str | None
    tz: str
    next_cut: datetime | None
    schedule_error: str | None

    @property
    def stages(self) -> list[str]:
        """Stage names in order: cut, then every environment but the last."""
        return ["cut", *self.envs[:-1]]

    @property
    def max_weekly(self) -> int:
        """The largest single environment-week count (the grouped bars' scale)."""
        return max((c for w in self.weeks for c in w.counts.values()), default=0)


def project_zone(project: Project) -> ZoneInfo:
    """The project's time zone, UTC when the configured one is unknown."""
    try:
        return ZoneInfo(project.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_cut(project: Project, now: datetime | None = None) -> tuple[datetime | None, str | None]:
    """The next scheduled cut (in the project's time zone) from the train's own rule, or why not."""
    from . import train

    if not project.train_cron:
        return None, None
    slot = train.next_slot(project, now or datetime.now(UTC))
    if slot is None:
        return None, f"The schedule '{project.train_cron}' is not a valid cron expression."
    return slot.astimezone(project_zone(project)), None


def _first_success(deployments: Sequence[Deployment], env_id: int) -> datetime | None:
    times = [_utc(d.finished_at or d.started_at or d.created_at) for d in deployments
             if d.environment_id == env_id and d.status == "succeeded"]
    return min((t for t in times if t is not None), default=None)


def _order(release: Release) -> tuple[int, int, int]:
    return (release.major, release.minor, release.patch)


def train_report(project: Project, *, now: datetime | None = None, limit: int = 20,
                 weeks: int = 12) -> TrainReport:
    """Lead times (cut to last environment), time per stage, hotfixes per release, deploys per
    week per environment and days between cuts, from the release and deployment rows."""
    now = now or datetime.now(UTC)
    envs = list(project.environments)
    names = [env.name for env in envs]
    all_releases = list(db.session.scalars(
        select(Release).where(Release.project_id == project.id)
        .options(selectinload(Release.deployments))))
    hotfix_count: dict[tuple[int, int], int] = {}
    for release in all_releases:
        if release.kind == "hotfix":
            hotfix_count[(release.major, release.minor)] = hotfix_count.get((release.major, release.minor), 0) + 1
    # Adopted releases were tagged before relapp existed: their cut time is unknown.
    cut = sorted((r for r in all_releases if r.source == "cut" and r.state != "failed"),
                 key=lambda r: (_utc(r.created_at) or now, r.id))
    reached_by: dict[int, dict[str, datetime]] = {}
    for release in cut:
        reached = {}
        for env in envs:
            first = _first_success(release.deployments, env.id)
            if first is not None:
                reached[env.name] = first
        reached_by[release.id] = reached
    timings: list[ReleaseTiming] = []
    for release in cut:
        cut_at = _utc(release.created_at) or now
        reached = reached_by[release.id]
        points = [("cut", cut_at)] + [(n, reached[n]) for n in names if n in reached]
        stages = [StageSpan(points[i][0], max(0.0, (points[i + 1][1] - points[i][1]).total_seconds()))
                  for i in range(len(points) - 1)]
        last_stage = points[-1][0]
        done = bool(names) and last_stage == names[-1]
        # A release is superseded when a newer one already entered the environment it waits for.
        waiting_for = names[names.index(last_stage) + 1] if not done and last_stage in names else (
            names[0] if not done and names else None)
        superseded = waiting_for is not None and any(
            waiting_for in reached_by[other.id] and _order(other) > _order(release) for other in cut)
        if not done and not superseded:
            stages.append(StageSpan(last_stage, max(0.0, (now - points[-1][1]).total_seconds()), open=True))
        lead = (reached[names[-1]] - cut_at).total_seconds() if done else None
        hotfixes = 0 if release.kind == "hotfix" else hotfix_count.get((release.major, release.minor), 0)
        timings.append(ReleaseTiming(release, cut_at, reached, stages, lead, hotfixes, superseded))
    leads = [t.lead_seconds for t in timings if t.lead_seconds is not None]
    mains = [t for t in timings if t.release.kind != "hotfix"]
    gaps = [Gap(b.release.version, b.cut_at, (b.cut_at - a.cut_at).total_seconds() / 86400)
            for a, b in itertools.pairwise(mains)]
    cron_next, schedule_error = next_cut(project, now)
    return TrainReport(
        project=project, envs=names, releases=timings[-limit:],
        weeks=deploys_per_week(project, now=now, weeks=weeks), gaps=gaps[-limit:],
        median_lead_days=statistics.median(leads) / 86400 if leads else None,
        median_gap_days=statistics.median(g.days for g in gaps) if gaps else None,
        within_week=sum(1 for lead in leads if lead <= WEEK_SECONDS), reached_last=len(leads),
        cron=project.train_cron, tz=project_zone(project).key, next_cut=cron_next,
        schedule_error=schedule_error)


def deploys_per_week(project: Project, *, now: datetime, weeks: int = 12) -> list[WeekCount]:
    """Successful deploys per environment per week (weeks start Monday in the project's zone)."""
    zone = project_zone(project)
    envs = list(project.environments)
    this_monday = now.astimezone(zone).date() - timedelta(days=now.astimezone(zone).weekday())
    first = this_monday - timedelta(weeks=weeks - 1)
    counts = {first + timedelta(weeks=i): {env.name: 0 for env in envs} for i in range(weeks)}
    by_id = {env.id: env.name for env in envs}
    start_utc = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    rows = db.session.scalars(select(Deployment).where(
        Deployment.environment_id.in_(list(by_id)), Deployment.status == "succeeded",
        or_(Deployment.finished_at >= start_utc, Deployment.finished_at.is_(None))))
    for deployment in rows:
        at = _utc(deployment.finished_at or deployment.created_at)
        if at is None:
            continue
        day = at.astimezone(zone).date()
        monday = day - timedelta(days=day.weekday())
        if monday in counts:
            counts[monday][by_id[deployment.environment_id]] += 1
    return [WeekCount(week, counts[week]) for week in sorted(counts)]


def nice_ceiling(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


# -- evidence ---------------------------------------------------------------------------------


@dataclass
class Evidence:
    """Everything one release's evidence page prints."""

    project: Project
    release: Release
    changelog: cl.Changelog | None
    since: Release | None
    changelog_error: str | None
    decisions: list[Decision]
    deployments: list[Deployment]
    hotfixes: list[Release]
    jobs: list[Job]


def evidence(project: Project, version: str) -> Evidence:
    """The release record: tag, commit, changelog, decisions, deploys, hotfixes, who cut it."""
    release = release_service.get_release(project, version)
    log: cl.Changelog | None = None
    since: Release | None = None
    error = None
    try:
        log, since = release_service.changelog(project, release)
    except ServiceError as exc:
        error = exc.detail
    decisions = list(db.session.scalars(select(Decision).where(Decision.release_id == release.id)
                                        .order_by(Decision.created_at, Decision.id)))
    deployments = list(db.session.scalars(select(Deployment).where(Deployment.release_id == release.id)
                                          .order_by(Deployment.created_at, Deployment.id)))
    jobs = list(db.session.scalars(select(Job).where(Job.release_id == release.id).order_by(Job.id)))
    return Evidence(project, release, log, since, error, decisions, deployments,
                    release_service.hotfixes_of(release), jobs)


# -- users ------------------------------------------------------------------------------------


def tokens_of(user: User) -> list[ApiToken]:
    """A user's API tokens, newest first (revoked ones included, marked)."""
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.id.desc())))


def all_users() -> list[User]:
    """Every user, for the admin's list."""
    return list(db.session.scalars(select(User).order_by(User.username)))


def projects() -> list[Project]:
    """Every project by key (for the project pickers)."""
    return list(db.session.scalars(select(Project).order_by(Project.key)))


def pick_project(key: str | None) -> Project | None:
    """The project named in ?project=, else the first one, else None."""
    from .projects import get_project

    if key:
        return get_project(key)
    return db.session.scalar(select(Project).order_by(Project.id))

