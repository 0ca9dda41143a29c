"""Drift: fetch what an environment says it runs (its version URL) and compare it with the record.

An environment may name a `version_url`. relapp GETs it (5 s, at most 64 KB, no redirects, through
the SSRF guard), reads a version from the body (plain text `1.4.0` or `v1.4.0`, or JSON with a
`"version"` field), stores what it saw on the environment, and compares it with the version of the
environment's latest successful deployment. A difference is drift.

Version URLs are written by admins and often point inside the network, so private and loopback
targets are allowed for the hosts listed in the environment driver's `allow_hosts` setting (the
webhook driver's own allow-list) or in `RELAPP_ALLOW_HOSTS` (a comma-separated list of `host` or
`host:port`, from the app config or the process environment). Everything else internal is refused
before any connection is made.

The drift *state* is kept in the append-only audit log: an `environment.drift` event is written when
drift starts, when the version seen while drifting changes, and when drift ends. The latest such
event is the previous state, so a deploy that moves the record never reads as "drift ended".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus
from semver import Version
from sqlalchemy import select, update

from ..drivers.netguard import BlockedTarget, Target, fetch, resolve_target
from ..extensions import db, get_queue, write_transaction
from ..models import AuditEvent, Deployment, Environment, Project, rq_job_id, utcnow
from . import audit

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
DRIFT_ACTION = "environment.drift"
ACTOR = "relapp-drift"
_MAX_ERROR = 500
_MAX_VERSION = 100


@dataclass(frozen=True)
class DriftResult:
    """What one check saw: the running version (or why it is unknown) against the recorded one."""

    environment_id: int
    environment: str
    observed_version: str | None
    recorded_version: str | None
    error: str | None
    checked_at: datetime
    # None when the running version is unknown (the check failed): no claim either way.
    drift: bool | None
    # True when this check started, changed or ended a drift (an audit event was written).
    changed: bool

    @property
    def sentence(self) -> str:
        """One line for a page or a log: in sync, drifting, or why the check failed."""
        if self.error is not None:
            return f"{self.environment}: version check failed: {self.error}"
        if self.drift:
            recorded = self.recorded_version or "nothing recorded"
            return (f"{self.environment} runs {self.observed_version}, but relapp recorded "
                    f"{recorded}.")
        return f"{self.environment} runs {self.observed_version}, as recorded."


class CheckFailed(Exception):
    """The version URL could not be read or did not name a version; the message says why."""


# -- settings ---------------------------------------------------------------------------------


def timeout_seconds() -> float:
    """The whole-check timeout (RELAPP_DRIFT_TIMEOUT, default 5 s)."""
    return max(0.05, float(current_app.config["RELAPP_DRIFT_TIMEOUT"]))


def allowed_hosts(env: Environment) -> list[str]:
    """Internal hosts this environment's version URL may reach: driver `allow_hosts` plus
    RELAPP_ALLOW_HOSTS."""
    hosts: list[str] = []
    configured = (env.driver or {}).get("allow_hosts")
    if isinstance(configured, list | tuple):
        hosts.extend(h for h in configured if isinstance(h, str) and h.strip())
    extra = current_app.config.get("RELAPP_ALLOW_HOSTS")
    if isinstance(extra, str):
        hosts.extend(h.strip() for h in extra.split(",") if h.strip())
    elif isinstance(extra, list | tuple):
        hosts.extend(str(h).strip() for h in extra if str(h).strip())
    return hosts


# -- fetching and parsing ---------------------------------------------------------------------


def parse_version(body: bytes, content_type: str = "") -> str:
    """The version a body names: plain text `1.4.0`/`v1.4.0`, or JSON `{"version": "1.4.0"}`."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CheckFailed("the answer is not UTF-8 text") from None
    if not text:
        raise CheckFailed("the answer is empty; expected a version like 1.4.0")
    candidate: Any = text
    if "json" in content_type.lower() or text.startswith("{"):
        try:
            data = json.loads(text)
        except RecursionError:  # a hostile version URL: JSON nested beyond the parser's depth
            raise CheckFailed("the answer is JSON nested too deeply to be a version") from None
        except ValueError:
            raise CheckFailed("the answer looks like JSON but is not valid JSON") from None
        if not isinstance(data, dict) or "version" not in data:
            raise CheckFailed('the JSON answer has no "version" field')
        candidate = data["version"]
        if not isinstance(candidate, str):
            raise CheckFailed('the JSON "version" field is not text')
    candidate = candidate.strip()
    shown = candidate[:40] + ("…" if len(candidate) > 40 else "")
    value = candidate[1:] if candidate[:1] in ("v", "V") else candidate
    if len(value) > _MAX_VERSION:
        raise CheckFailed(f"the answer {shown!r} is not a version like 1.4.0")
    try:
        return str(Version.parse(value))
    except (ValueError, TypeError):
        raise CheckFailed(f"the answer {shown!r} is not a version like 1.4.0") from None


def _get(target: Target, timeout: float) -> tuple[int, str, bytes]:
    """GET the checked addresses in turn (never a fresh DNS answer); status, type and body."""
    status, headers, body = fetch(target, "GET", headers={"Accept": "application/json, text/plain",
                                                          "User-Agent": "relapp-drift/1"},
                                  timeout=timeout, max_bytes=MAX_BODY_BYTES)
    if len(body) > MAX_BODY_BYTES:
        raise CheckFailed(f"the answer is larger than {MAX_BODY_BYTES // 1024} KB")
    return status, headers.get("content-type", ""), body


def fetch_version(url: str, allow_hosts: list[str], timeout: float | None = None) -> str:
    """GET a version URL through the SSRF guard and return the version it names, or CheckFailed."""
    timeout = timeout_seconds() if timeout is None else timeout
    try:
        target = resolve_target(url, allow_hosts)
    except BlockedTarget as exc:
        raise CheckFailed(f"the version URL is blocked: {exc}") from None
    try:
        status, content_type, body = _get(target, timeout)
    except httpx.TimeoutException:
        raise CheckFailed(f"{target.display()} did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise CheckFailed(f"the request to {target.display()} failed: {exc}") from None
    if 300 <= status < 400:
        raise CheckFailed(f"{target.display()} answered HTTP {status} (a redirect); relapp does "
                          "not follow redirects, so configure the final URL")
    if status != 200:
        raise CheckFailed(f"{target.display()} answered HTTP {status}")
    return parse_version(body, content_type)


# -- the check --------------------------------------------------------------------------------


def recorded_version(env: Environment) -> str | None:
    """The version of the environment's latest successful deployment (what relapp recorded)."""
    deployment = db.session.scalar(select(Deployment).where(
        Deployment.environment_id == env.id, Deployment.status == "succeeded")
        .order_by(Deployment.id.desc()).limit(1))
    return deployment.release.version if deployment is not None else None


def _same(observed: str, recorded: str | None) -> bool:
    if recorded is None:
        return False
    try:
        return Version.parse(observed) == Version.parse(recorded.removeprefix("v"))
    except ValueError:
        return observed == recorded


def last_state(env: Environment) -> dict[str, Any] | None:
    """The latest drift event's `after` ({"drift", "observed", "recorded"}), or None if none yet."""
    event = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == DRIFT_ACTION, AuditEvent.target == _target(env))
        .order_by(AuditEvent.id.desc()).limit(1))
    return event.after if event is not None else None


def _target(env: Environment) -> str:
    return f"environment:{env.project.key}/{env.name}"


def check_environment(env_id: int) -> DriftResult:
    """Fetch one environment's version URL, store what it runs, and record a change of drift."""
    env = db.session.get(Environment, env_id)
    if env is None:
        raise LookupError(f"There is no environment {env_id}.")
    url, hosts, name = env.version_url, allowed_hosts(env), env.name
    # No transaction (and no SQLite lock) stays open while the network is asked.
    db.session.commit()
    observed: str | None = None
    error: str | None = None
    if not url:
        error = "no version_url is configured"
    else:
        try:
            observed = fetch_version(url, hosts)
        except CheckFailed as exc:
            error = str(exc)[:_MAX_ERROR]
    now = utcnow()
    changed = False
    with write_transaction():
        # Row lock on PostgreSQL so two checks of one environment decide the state one at a time;
        # SQLite's IMMEDIATE transaction already serialises them.
        env = db.session.scalars(select(Environment).where(Environment.id == env_id)
                                 .with_for_update()).one()
        recorded = recorded_version(env)
        values: dict[str, Any] = {"observed_at": now, "observed_error": error}
        if observed is not None:
            values["observed_version"] = observed
        db.session.execute(update(Environment).where(Environment.id == env_id).values(**values))
        drift = None if observed is None else not _same(observed, recorded)
        if drift is not None:
            before = last_state(env)
            was = bool(before and before.get("drift"))
            seen_before = before.get("observed") if before else None
            if drift != was or (drift and observed != seen_before):
                after = {"drift": drift, "observed": observed, "recorded": recorded}
                detail = (f"{name} runs {observed}, but relapp recorded {recorded or 'no deploy'}."
                          if drift else f"{name} runs {observed} again, as recorded; drift ended.")
                audit.record(ACTOR, DRIFT_ACTION, project_id=env.project_id, target=_target(env),
                             before=before, after=after, detail=detail)
                changed = True
    return DriftResult(environment_id=env_id, environment=name, observed_version=observed,
                       recorded_version=recorded, error=error, checked_at=now, drift=drift,
                       changed=changed)


def check_all() -> list[DriftResult]:
    """Check every environment that names a version URL; one failure never stops the others."""
    ids = list(db.session.scalars(select(Environment.id).join(Project)
                                  .where(Environment.version_url.is_not(None))
                                  .order_by(Project.key, Environment.position)))
    results = []
    for env_id in ids:
        try:
            results.append(check_environment(env_id))
        except Exception:
            log.exception("drift check of environment %s failed", env_id)
            db.session.rollback()
    return results


def is_drifting(env: Environment) -> bool | None:
    """Drift as the page shows it now: None when unknown (never checked, or the last check failed)."""
    if env.observed_version is None or env.observed_error is not None:
        return None
    return not _same(env.observed_version, recorded_version(env))


# -- scheduling (RQ's own scheduler; deterministic job ids) ------------------------------------


def schedule_check(env_id: int, delay: float = 5) -> str | None:
    """Schedule one check of an environment `delay` seconds from now (after a deploy); its job id,
    or None when the environment names no version URL (or Redis cannot take it now)."""
    if not db.session.scalar(select(Environment.version_url).where(Environment.id == env_id)):
        return None
    run_at = utcnow() + timedelta(seconds=delay)
    # Checks asked for within the same second share one id, so a burst of calls runs one check.
    job_id = f"drift-check-{env_id}-{int(run_at.timestamp())}"
    return schedule_once("relapp.jobs.schedule.check_drift", (env_id,), run_at, job_id)


def schedule_once(func: str, args: tuple[Any, ...], run_at: datetime, job_id: str,
              *, timeout: int = 60) -> str | None:
    """Put one job on the queue's ScheduledJobRegistry unless that id already exists; its id
    (`job_id` with the installation's prefix, see models.rq_job_id), or None when Redis cannot
    take it now (the next tick or worker start schedules again)."""
    job_id = rq_job_id(job_id)
    queue = get_queue("schedule")
    job = queue.create_job(func, args=args, job_id=job_id, status=JobStatus.SCHEDULED,
                           timeout=timeout, result_ttl=3600, failure_ttl=24 * 3600)
    try:
        queue.schedule_job(job, run_at, unique=True)
    except DuplicateJobError:
        pass  # already scheduled by another worker, request or tick: the same run, once
    except (RedisError, OSError) as exc:
        log.warning("could not schedule %s: Redis unavailable (%s)", job_id, exc.__class__.__name__)
        return None
    return job_id
