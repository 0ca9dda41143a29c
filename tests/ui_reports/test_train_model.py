"""The release-train read model's numbers on known rows (HISTORY in conftest)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from relapp.extensions import db
from relapp.models import Deployment, Release
from relapp.services import train_report

from .conftest import NOW

DAY = 86400


def by_version(report):
    return {t.release.version: t for t in report.releases}


def test_lead_time_is_cut_to_first_success_in_the_last_environment(history):
    report = train_report.train_report(history.project, now=NOW)
    timings = by_version(report)
    assert [t.release.version for t in report.releases] == ["1.3.0", "1.4.0", "1.4.1", "1.5.0", "1.6.0", "1.7.0"]
    assert timings["1.3.0"].lead_seconds == 12 * DAY
    assert timings["1.4.0"].lead_seconds == 9 * DAY
    assert timings["1.4.1"].lead_seconds == 1 * DAY
    # The failed prod deploy at -6 d does not count: 1.5.0 reached prod at -5 d.
    assert timings["1.5.0"].lead_seconds == 11 * DAY
    assert timings["1.6.0"].lead_seconds is None and timings["1.7.0"].lead_seconds is None
    assert report.median_lead_days == 10.0
    assert (report.within_week, report.reached_last) == (1, 4)


def test_time_in_each_stage_and_open_stages(history):
    timings = by_version(train_report.train_report(history.project, now=NOW))
    assert [(s.stage, s.seconds / DAY, s.open) for s in timings["1.3.0"].stages] == [
        ("cut", 2, False), ("qa", 5, False), ("beta", 5, False)]
    assert [(s.stage, s.seconds / DAY, s.open) for s in timings["1.5.0"].stages] == [
        ("cut", 1, False), ("qa", 6, False), ("beta", 4, False)]
    # 1.6.0 has been in beta for 2 days now; 1.7.0 in qa for 1 day.
    assert [(s.stage, s.seconds / DAY, s.open) for s in timings["1.6.0"].stages] == [
        ("cut", 1, False), ("qa", 5, False), ("beta", 2, True)]
    assert [(s.stage, s.seconds / DAY, s.open) for s in timings["1.7.0"].stages] == [
        ("cut", 1, False), ("qa", 1, True)]
    assert timings["1.6.0"].total_seconds == 8 * DAY


def test_a_release_overtaken_by_a_newer_one_stops_its_clock(history):
    # 1.7.0 enters beta: 1.6.0 no longer waits to leave beta (it was superseded, not "in prod soon").
    envs = {e.name: e for e in history.project.environments}
    db.session.add(Deployment(release_id=history.releases["1.7.0"].id, environment_id=envs["prod"].id,
                              status="succeeded", created_at=NOW - timedelta(hours=3),
                              finished_at=NOW - timedelta(hours=2)))
    db.session.commit()
    timings = by_version(train_report.train_report(history.project, now=NOW))
    assert timings["1.6.0"].superseded is True
    assert [s.open for s in timings["1.6.0"].stages] == [False, False]
    assert timings["1.7.0"].superseded is False


def test_hotfixes_per_release_and_days_between_cuts(history):
    report = train_report.train_report(history.project, now=NOW)
    timings = by_version(report)
    assert {v: t.hotfixes for v, t in timings.items() if t.release.kind != "hotfix"} == {
        "1.3.0": 0, "1.4.0": 1, "1.5.0": 0, "1.6.0": 0, "1.7.0": 0}
    # Cuts from main at -40, -30, -16, -8, -2 days; the hotfix is not part of the cadence.
    assert [(g.version, g.days) for g in report.gaps] == [
        ("1.4.0", 10), ("1.5.0", 14), ("1.6.0", 8), ("1.7.0", 6)]
    assert report.median_gap_days == 9.0


def test_deploys_per_week_count_successes_by_monday_in_the_project_zone(history):
    report = train_report.train_report(history.project, now=NOW, weeks=12)
    weeks = {w.week: w.counts for w in report.weeks}
    assert len(report.weeks) == 12 and report.weeks[-1].week == date(2026, 3, 16)
    assert weeks[date(2026, 3, 16)] == {"qa": 1, "beta": 1, "prod": 0}
    assert weeks[date(2026, 3, 9)] == {"qa": 1, "beta": 1, "prod": 1}
    totals = {env: sum(w.counts[env] for w in report.weeks) for env in ("qa", "beta", "prod")}
    assert totals == {"qa": 6, "beta": 5, "prod": 4}


def test_adopted_and_failed_releases_are_not_on_the_train(history):
    project = history.project
    db.session.add(Release(project_id=project.id, version="0.9.0", major=0, minor=9, patch=0, kind="minor",
                           source="adopted", tag="v0.9", sha=None, state="tagged"))
    db.session.add(Release(project_id=project.id, version="1.8.0", major=1, minor=8, patch=0, kind="minor",
                           source="cut", tag="v1.8.0", sha=None, state="failed", created_at=NOW))
    db.session.commit()
    versions = [t.release.version for t in train_report.train_report(project, now=NOW).releases]
    assert "0.9.0" not in versions and "1.8.0" not in versions


@pytest.mark.parametrize(("cron", "tz", "expected"), [
    # NOW is Wed 2026-03-18 12:00 UTC = 13:00 in Berlin: next Monday 09:00 Berlin time.
    ("0 9 * * MON", "Europe/Berlin", datetime(2026, 3, 23, 9, 0)),
    # 12:30 Berlin (11:30 UTC) has passed at 12:00 UTC, so it is tomorrow's; in UTC it is today's.
    ("30 12 * * *", "Europe/Berlin", datetime(2026, 3, 19, 12, 30)),
    ("30 12 * * *", "UTC", datetime(2026, 3, 18, 12, 30)),
])
def test_next_scheduled_cut_in_the_project_time_zone(history, cron, tz, expected):
    history.project.train_cron, history.project.timezone = cron, tz
    nxt, error = train_report.next_cut(history.project, NOW)
    assert error is None
    assert nxt.replace(tzinfo=None) == expected and str(nxt.tzinfo) == tz


def test_a_bad_schedule_is_reported_not_raised(history):
    history.project.train_cron = "every monday"
    nxt, error = train_report.next_cut(history.project, NOW)
    assert nxt is None and "not a valid cron expression" in error


def test_nice_ceiling():
    assert [train_report.nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 20.5, 99, 140)] == [1, 1, 1, 10, 20, 50, 100, 200]
