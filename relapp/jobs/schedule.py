"""Periodic RQ jobs: the release train's ticks and the drift checks.

These are plain RQ functions, not job rows, run in a fresh context of the worker's app (each has
its own database session, removed when it ends): each is scheduled on RQ's own scheduler
(`ScheduledJobRegistry`, moved to the queue by a worker started `with_scheduler=True`) under a
deterministic job id, so several workers never double one. They take ids, re-load rows, and are
safe to run twice: a train slot is claimed in the database, a drift check just looks again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from ..models import utcnow
from ..services import drift, train
from ..services.drift import schedule_once
from . import job_context

log = logging.getLogger(__name__)


def _drift_interval() -> int:
    return int(current_app.config["RELAPP_DRIFT_INTERVAL"])


def next_drift_slot(now: datetime, interval: int) -> datetime:
    """The next interval boundary strictly after `now` (aware UTC): every worker computes the same."""
    epoch = int(now.timestamp()) // interval * interval + interval
    return datetime.fromtimestamp(epoch, UTC)


def schedule_drift_tick(now: datetime | None = None) -> str | None:
    """Put the next drift tick on RQ's scheduler (id `drift-tick-<slot epoch>`); its job id."""
    slot = next_drift_slot(now or utcnow(), _drift_interval())
    return schedule_once("relapp.jobs.schedule.drift_tick", (), slot,
                         f"drift-tick-{int(slot.timestamp())}", timeout=600)


def ensure_scheduled() -> dict[str, Any]:
    """Schedule every train's next slot and the next drift tick (idempotent; cheap to repeat).

    Call it at worker start and from the worker's maintenance pass: if Redis lost its data, the
    chains of self-rescheduling jobs are rebuilt from the database within one pass.
    """
    with job_context():
        trains = train.schedule_all()
        drift_job = schedule_drift_tick()
        return {"trains": {k: v.isoformat() if v else None for k, v in trains.items()},
                "drift": drift_job}


def train_tick(project_id: int, slot_iso: str) -> dict[str, Any]:
    """Run one release-train slot (once, however often it is delivered) and schedule the next."""
    with job_context():
        result = train.tick(project_id, datetime.fromisoformat(slot_iso))
        log.info("train tick project=%s slot=%s: %s", project_id, slot_iso, result.detail)
        return {"outcome": result.outcome, "detail": result.detail,
                "release_id": result.release_id, "deployment_id": result.deployment_id}


def check_drift(env_id: int) -> dict[str, Any]:
    """Check one environment's version URL (scheduled a few seconds after each deploy)."""
    with job_context():
        try:
            result = drift.check_environment(env_id)
        except LookupError as exc:
            return {"environment_id": env_id, "error": str(exc)}
        return {"environment_id": env_id, "drift": result.drift, "error": result.error,
                "observed": result.observed_version, "recorded": result.recorded_version}


def drift_tick() -> dict[str, Any]:
    """Check every environment with a version URL, then schedule the next tick."""
    with job_context():
        try:
            results = drift.check_all()
        finally:
            # Scheduled after the checks (and even if they failed) so the chain never breaks;
            # the next boundary is strictly later than now, so this tick never re-schedules itself.
            schedule_drift_tick()
        return {"checked": len(results), "drifting": [r.environment for r in results if r.drift],
                "failed": [r.environment for r in results if r.error]}
