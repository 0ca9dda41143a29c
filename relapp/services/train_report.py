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

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm.attributes import set_committed_value

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
    weeks_shown: int = 12
    limit: int = 20

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


def window_start(project: Project, now: datetime, weeks: int) -> datetime:
    """The first instant the page plots: Monday 00:00 (project time) of the oldest week shown."""
    zone = project_zone(project)
    local = now.astimezone(zone).date()
    first = local - timedelta(days=local.weekday()) - timedelta(weeks=weeks - 1)
    return datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)


def _on_train() -> Any:
    # Adopted releases were tagged before relapp existed: their cut time is unknown.
    return (Release.source == "cut") & (Release.state != "failed")


def _window_releases(project: Project, limit: int) -> list[Release]:
    """The newest `limit` releases cut, oldest first, with their deployments: one query on
    (project_id, created_at) and one on the deployments' release_id."""
    newest = list(db.session.scalars(
        select(Release).where(Release.project_id == project.id, _on_train())
        .order_by(Release.created_at.desc(), Release.id.desc()).limit(limit)))
    # Their deployments in one query that runs even for none (a constant count).
    by_release: dict[int, list[Deployment]] = {r.id: [] for r in newest}
    for deployment in db.session.scalars(select(Deployment).where(
            Deployment.release_id.in_(list(by_release))).order_by(Deployment.id)):
        by_release[deployment.release_id].append(deployment)
    for release in newest:
        set_committed_value(release, "deployments", by_release[release.id])
    return newest[::-1]


def _hotfix_counts(project: Project, releases: Sequence[Release]) -> dict[tuple[int, int], int]:
    """Hotfixes on each line of these releases (one grouped query on the line index)."""
    lines = {(r.major, r.minor) for r in releases if r.kind != "hotfix"}
    if not lines:
        lines = {(-1, -1)}  # one query whatever the window holds
    rows = db.session.execute(
        select(Release.major, Release.minor, func.count()).where(
            Release.project_id == project.id, Release.kind == "hotfix",
            or_(*(and_(Release.major == major, Release.minor == minor) for major, minor in sorted(lines))))
        .group_by(Release.major, Release.minor))
    return {(major, minor): count for major, minor, count in rows}


def _cut_before(project: Project, release: Release | None) -> datetime | None:
    """When the main cut before the window's first one was made (its first gap), by index."""
    before = release.created_at if release is not None else datetime(1970, 1, 1, tzinfo=UTC)
    found: datetime | None = db.session.scalar(
        select(Release.created_at).where(Release.project_id == project.id, Release.created_at < before,
                                         Release.kind != "hotfix", _on_train())
        .order_by(Release.created_at.desc(), Release.id.desc()).limit(1))
    return _utc(found)


def _superseded(timings_in: Sequence[tuple[Release, dict[str, datetime]]], names: Sequence[str]) -> set[int]:
    """Ids of releases waiting for an environment a higher version already entered.

    One pass from the highest version down, keeping the environments reached so far: linear in
    the window's releases (it was a comparison of every pair)."""
    found: set[int] = set()
    reached_above: set[str] = set()
    ordered = sorted(timings_in, key=lambda pair: _order(pair[0]), reverse=True)
    for _version, group in itertools.groupby(ordered, key=lambda pair: _order(pair[0])):
        members = list(group)
        for release, reached in members:
            last = next((n for n in reversed(names) if n in reached), None)
            if names and last == names[-1]:
                continue
            waiting_for = names[names.index(last) + 1] if last is not None else (names[0] if names else None)
            if waiting_for is not None and waiting_for in reached_above:
                found.add(release.id)
        for _release, reached in members:
            reached_above.update(reached)
    return found


def train_report(project: Project, *, now: datetime | None = None, limit: int = 20,
                 weeks: int = 12) -> TrainReport:
    """Lead times (cut to last environment), time per stage, hotfixes per release, deploys per
    week per environment and days between cuts, from the release and deployment rows.

    It reads only the windows it plots: the newest `limit` releases cut (with their
    deployments and their lines' hotfix counts) and the cut just before them, and the
    successful deploys of the last `weeks` weeks; a fixed number of bounded, indexed queries
    whatever the history holds. The medians and counts are those of the releases plotted."""
    now = now or datetime.now(UTC)
    envs = list(project.environments)
    names = [env.name for env in envs]
    cut = _window_releases(project, limit)
    hotfix_count = _hotfix_counts(project, cut)
    reached_by: dict[int, dict[str, datetime]] = {}
    for release in cut:
        reached = {}
        for env in envs:
            first = _first_success(release.deployments, env.id)
            if first is not None:
                reached[env.name] = first
        reached_by[release.id] = reached
    superseded_ids = _superseded([(r, reached_by[r.id]) for r in cut], names)
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
        superseded = release.id in superseded_ids
        if not done and not superseded:
            stages.append(StageSpan(last_stage, max(0.0, (now - points[-1][1]).total_seconds()), open=True))
        lead = (reached[names[-1]] - cut_at).total_seconds() if done else None
        hotfixes = 0 if release.kind == "hotfix" else hotfix_count.get((release.major, release.minor), 0)
        timings.append(ReleaseTiming(release, cut_at, reached, stages, lead, hotfixes, superseded))
    leads = [t.lead_seconds for t in timings if t.lead_seconds is not None]
    mains = [t for t in timings if t.release.kind != "hotfix"]
    first_main = mains[0].release if mains else None
    before = _cut_before(project, first_main)  # queried even when empty: a constant count
    gaps = [Gap(b.release.version, b.cut_at, (b.cut_at - a.cut_at).total_seconds() / 86400)
            for a, b in itertools.pairwise(mains)]
    if mains and before is not None:
        gaps.insert(0, Gap(mains[0].release.version, mains[0].cut_at,
                           (mains[0].cut_at - before).total_seconds() / 86400))
    cron_next, schedule_error = next_cut(project, now)
    return TrainReport(
        project=project, envs=names, releases=timings,
        weeks=deploys_per_week(project, now=now, weeks=weeks), gaps=gaps,
        median_lead_days=statistics.median(leads) / 86400 if leads else None,
        median_gap_days=statistics.median(g.days for g in gaps) if gaps else None,
        within_week=sum(1 for lead in leads if lead <= WEEK_SECONDS), reached_last=len(leads),
        cron=project.train_cron, tz=project_zone(project).key, next_cut=cron_next,
        schedule_error=schedule_error, weeks_shown=weeks, limit=limit)


def deploys_per_week(project: Project, *, now: datetime, weeks: int = 12) -> list[WeekCount]:
    """Successful deploys per environment per week (weeks start Monday in the project's zone).

    Counted by the database, one sum per week over the window's dates on the (environment,
    status, finished_at) index: a row per environment comes back, however many deploys the
    weeks hold (a succeeded deploy always has its finish time)."""
    zone = project_zone(project)
    envs = list(project.environments)
    first = window_start(project, now, weeks).astimezone(zone).date()
    mondays = [first + timedelta(weeks=i) for i in range(weeks)]
    # Each week's bounds in UTC, from local midnights (a DST change moves them by an hour).
    bounds = [datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
              for day in [*mondays, first + timedelta(weeks=weeks)]]
    sums = [func.sum(case((and_(Deployment.finished_at >= bounds[i], Deployment.finished_at < bounds[i + 1]), 1),
                          else_=0)) for i in range(weeks)]
    by_id = {env.id: env.name for env in envs}
    counts = {monday: {env.name: 0 for env in envs} for monday in mondays}
    rows = db.session.execute(select(Deployment.environment_id, *sums).where(
        Deployment.environment_id.in_(list(by_id) or [-1]), Deployment.status == "succeeded",
        Deployment.finished_at >= bounds[0], Deployment.finished_at < bounds[-1])
        .group_by(Deployment.environment_id))
    for env_id, *per_week in rows:
        for monday, count in zip(mondays, per_week, strict=True):
            counts[monday][by_id[env_id]] = int(count or 0)
    return [WeekCount(monday, counts[monday]) for monday in mondays]


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


WINDOWS = (4, 12, 26, 52)  # weeks the train page offers; anything else is the default 12


def window_weeks(text: str | None) -> int:
    """The weeks a ?weeks= asks for, when it is one the page offers; else 12."""
    try:
        weeks = int(text or 12)
    except ValueError:
        return 12
    return weeks if weeks in WINDOWS else 12


def train_page(project_key: str | None, weeks: int = 12) -> TrainPage:
    """The train page of the project named in ?project= (else the first; None when none), over
    the last `weeks` weeks."""
    project = pick_project(project_key)
    report = train_report(project, weeks=weeks) if project else None
    return TrainPage(project=project, projects=projects(), report=report,
                     charts=chart_data(report) if report else {})
