"""Read model of the release train page: lead times, time per stage, hotfixes per release, deploys
per week, days between cuts and the next scheduled cut, and the chart data that plots them."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Deployment, Project, Release
from .projects import pick_project, projects

WEEK_SECONDS = 7 * 86400
DAY = 86400.0


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value



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


def even_ceiling(count: float) -> int:
    """An even axis maximum (at least 2) for counts, so the middle grid line is a whole number."""
    whole = max(2, int(-(-count // 1)))
    return whole + whole % 2


def chart_data(report: TrainReport) -> dict[str, Any]:
    """Bars, spans and scales for the SVG charts (presentation only: days, labels, tooltips)."""
    last = report.envs[-1] if report.envs else "the last environment"
    lead = [{"label": t.release.version, "value": t.lead_seconds / DAY,
             "cls": "ok" if t.lead_seconds <= WEEK_SECONDS else "late",
             "note": f"{t.lead_seconds / DAY:.1f}", "sub": t.cut_at.strftime("%d %b"),
             "tip": f"{t.release.version}: cut {t.cut_at:%Y-%m-%d} → {last} in "
                    f"{t.lead_seconds / DAY:.1f} days"}
            for t in report.releases if t.lead_seconds is not None]
    stages = []
    for t in report.releases:
        total = t.total_seconds / DAY
        state = " so far" if any(s.open for s in t.stages) else (" (superseded)" if t.superseded else "")
        stages.append({"label": t.release.version, "total": total, "note": f"{total:.1f} d{state}",
                       "spans": [{"stage": s.stage, "days": s.seconds / DAY, "open": s.open}
                                 for s in t.stages]})
    hotfixes = [{"label": t.release.version, "value": t.hotfixes, "cls": "late" if t.hotfixes else "ok",
                 "note": str(t.hotfixes), "sub": "",
                 "tip": f"{t.release.version}: {t.hotfixes} hotfix{'es' if t.hotfixes != 1 else ''}"}
                for t in report.releases if t.release.kind != "hotfix"]
    gaps = [{"label": g.version, "value": g.days, "cls": "ok" if g.days <= 7 else "late",
             "note": f"{g.days:.1f}", "sub": g.cut_at.strftime("%d %b"),
             "tip": f"{g.version} was cut {g.days:.1f} days after the previous cut"} for g in report.gaps]
    return {
        "lead": lead, "lead_max": nice_ceiling(max([i["value"] for i in lead] + [7])),
        "stages": stages, "stages_max": nice_ceiling(max([s["total"] for s in stages] + [7])),
        "hotfixes": hotfixes, "hotfixes_max": even_ceiling(max([i["value"] for i in hotfixes], default=0)),
        "gaps": gaps, "gaps_max": nice_ceiling(max([i["value"] for i in gaps] + [7])),
        "weeks_max": even_ceiling(report.max_weekly),
    }


@dataclass
class TrainPage:
    """The train page: the chosen project, the picker's projects, its report and chart data."""

    project: Project | None
    projects: list[Project]
    report: TrainReport | None
    charts: dict[str, Any]


def train_page(project_key: str | None) -> TrainPage:
    """The train page of the project named in ?project= (else the first; None when none)."""
    project = pick_project(project_key)
    report = train_report(project) if project else None
    return TrainPage(project=project, projects=projects(), report=report,
                     charts=chart_data(report) if report else {})
