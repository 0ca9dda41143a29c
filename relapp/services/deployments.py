"""Deploy use cases: ask for a deploy through the pipeline gates, report back, cancel, lock, freeze.

The database is the record of truth. A deployment, its job (the outbox row) and its audit event are
committed in one transaction and handed to Redis only after the commit; the partial unique index
`uq_deployments_active_env` is the real guard against two active deploys in one environment.
What a job, the reaper or a CD system's report writes runs in a retried write transaction
(`in_write_transaction`), so a busy database delays a deploy's record and never loses it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import semver
from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..domain import pipeline
from ..domain.pipeline import Role
from ..drivers import verify
from ..drivers.webhook import SIGNATURE_HEADER, signing_secret
from ..exceptions import Conflict, Forbidden, NotFound, ServiceError
from ..extensions import backoff, db, in_write_transaction, retryable
from ..models import Decision, Deployment, Environment, Job, Project, Release, User, utcnow
from . import audit
from .projects import get_environment
from .queue import create_job, dispatch

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
MAX_REASON = 500
# What a caller must do when a status report is neither signed nor sent with a token.
UNSIGNED = (f"Sign the body with the environment's webhook secret in {SIGNATURE_HEADER} "
            f"(sha256=<hex HMAC>), or send an API token of someone who may deploy there.")


class Unsigned(ServiceError):
    """A status report without a valid signature (and without a token)."""

    status = 401
    code = "unauthorized"


# -- settings ---------------------------------------------------------------------------------


def lease_seconds() -> float:
    """How long a running deploy's lease lasts between heartbeats (RELAPP_LEASE_SECONDS)."""
    return max(1.0, float(current_app.config["RELAPP_LEASE_SECONDS"]))


def wait_seconds(driver_kind: str) -> float:
    """How long a handed-off deploy may wait for its report (webhook: 1 h, manual: 1 day)."""
    if driver_kind == "manual":
        return float(current_app.config["RELAPP_MANUAL_WAIT_SECONDS"])
    return float(current_app.config["RELAPP_WEBHOOK_WAIT_SECONDS"])


# -- reads ------------------------------------------------------------------------------------


def version_of(release: Release) -> semver.Version:
    """The release's version as semver (falling back to its numbers for odd legacy strings)."""
    try:
        return semver.Version.parse(release.version)
    except ValueError:
        return semver.Version(release.major, release.minor, release.patch)


def current_deployment(env: Environment) -> Deployment | None:
    """The latest successful deployment of an environment: what runs there now."""
    return db.session.scalar(select(Deployment).where(
        Deployment.environment_id == env.id, Deployment.status == "succeeded")
        .order_by(Deployment.id.desc()).limit(1))


def active_deployment(env: Environment) -> Deployment | None:
    """The queued or running deployment that holds the environment, if any."""
    return db.session.scalar(select(Deployment).where(
        Deployment.environment_id == env.id, Deployment.status.in_(ACTIVE)).limit(1))


def get_deployment(deployment_id: int) -> Deployment:
    """The deployment with this id, or NotFound with a sentence."""
    deployment = db.session.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFound(f"There is no deployment {deployment_id}.")
    return deployment


def deployed_by(release: Release, env: Environment) -> list[str]:
    """Who deployed this release to this environment successfully."""
    rows = db.session.scalars(select(Deployment).where(
        Deployment.release_id == release.id, Deployment.environment_id == env.id,
        Deployment.status == "succeeded"))
    return sorted({d.requested_by.username for d in rows if d.requested_by is not None})


def decision_facts(decisions: list[Decision]) -> list[pipeline.DecisionFacts]:
    """Decisions as the pipeline rules see them."""
    return [pipeline.DecisionFacts(environment=d.environment.name, decision=d.decision,
                                   by=d.by.username if d.by else "?", at=d.created_at,
                                   comment=d.comment or "", bugs=tuple(d.bugs or ()))
            for d in decisions]


def release_facts(release: Release) -> pipeline.ReleaseFacts:
    """The parts of a release the gates look at."""
    return pipeline.ReleaseFacts(version=version_of(release), kind=release.kind,
                                 tagged=release.state == "tagged" and bool(release.sha),
                                 sha=release.sha,
                                 cut_by=release.created_by.username if release.created_by else None)


def environment_facts(env: Environment) -> pipeline.EnvironmentFacts:
    """One environment as configured plus what runs there now, for the gates."""
    current = current_deployment(env)
    active = active_deployment(env)
    return pipeline.EnvironmentFacts(
        name=env.name, position=env.position, requires_go_from=env.requires_go_from,
        deploy_roles=frozenset(env.deploy_roles or ()), decide_roles=frozenset(env.decide_roles or ()),
        locked=env.locked, lock_reason=env.lock_reason, frozen=env.frozen,
        freeze_reason=env.freeze_reason, separation_of_duties=env.separation_of_duties,
        current_version=version_of(current.release) if current else None,
        active_deployment=pipeline.ActiveDeployment(
            version=version_of(active.release), state=active.status,
            requested_by=active.requested_by.username if active.requested_by else "relapp")
        if active else None)


def actor_of(user: User) -> pipeline.Actor:
    """A signed-in user as the pipeline rules see them."""
    return pipeline.Actor(username=user.username, role=pipeline.Role(user.role))


def may_deploy(user: User, env: Environment) -> bool:
    """True when the user's role may deploy to the environment (admins always may)."""
    return user.role == Role.ADMIN or user.role in (env.deploy_roles or ())


@dataclass(frozen=True)
class EnvironmentState:
    """An environment with what runs there now and the deployment that holds it, if any."""

    environment: Environment
    current: Deployment | None
    active: Deployment | None


def environment_state(env: Environment) -> EnvironmentState:
    """What runs in one environment and what holds it."""
    return EnvironmentState(env, current_deployment(env), active_deployment(env))


def environment_states(project: Project) -> list[EnvironmentState]:
    """Each of the project's environments, in promotion order, with what runs and what holds it."""
    return [environment_state(env) for env in project.environments]


# -- requesting a deploy ----------------------------------------------------------------------


def _refused(verdict: pipeline.Verdict, *, code: str = "deploy_refused") -> ServiceError:
    reasons = [{"code": r.code, "sentence": r.sentence} for r in verdict.reasons]
    # A role problem is "not allowed" (403) when it is the only thing wrong; otherwise the
    # request is refused by the state of things (409), which waiting or fixing can change.
    status = 403 if verdict.codes == ("not-allowed",) else 409
    return ServiceError(verdict.message, status=status, code=code, reasons=reasons)


def deploy_verdict(release: Release, env: Environment, actor: User, *,
                   rollback_reason: str | None = None,
                   freeze_reason: str | None = None) -> pipeline.Verdict:
    """What the gates say about deploying `release` to `env` now (nothing is written)."""
    required = None
    if env.requires_go_from:
        required = next((e for e in env.project.environments if e.name == env.requires_go_from), None)
    return pipeline.check_deploy(
        release_facts(release), environment_facts(env),
        decisions=decision_facts(list(release.decisions)), actor=actor_of(actor),
        request=pipeline.DeployRequest(rollback_reason=rollback_reason, freeze_reason=freeze_reason),
        deployed_by=deployed_by(release, required) if required is not None else ())


def _reason(text: str | None, name: str) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ServiceError(f"The {name} must be text.", code="invalid_field")
    text = text.strip()
    if len(text) > MAX_REASON:
        raise ServiceError(f"The {name} is longer than {MAX_REASON} characters.", code="invalid_field")
    return text or None


def request_deploy(project: Project, release: Release, env_name: str, actor: User, *,
                   rollback_reason: str | None = None,
                   freeze_reason: str | None = None) -> Deployment:
    """Queue a deploy of `release` to `env_name` if every gate allows it; else 403/409 with why."""
    env = get_environment(project, env_name)
    if release.project_id != project.id:
        raise NotFound(f"Project {project.key} has no release {release.version}.")
    rollback_reason = _reason(rollback_reason, "rollback reason")
    freeze_reason = _reason(freeze_reason, "freeze reason")
    verdict = deploy_verdict(release, env, actor, rollback_reason=rollback_reason,
                             freeze_reason=freeze_reason)
    if not verdict.allowed:
        raise _refused(verdict)
    previous = current_deployment(env)
    through_freeze = env.frozen and freeze_reason is not None
    deployment = Deployment(
        release_id=release.id, environment_id=env.id, status="queued", requested_by_id=actor.id,
        rollback_reason=rollback_reason if verdict.rollback else None,
        freeze_reason=freeze_reason if through_freeze else None,
        previous_version=previous.release.version if previous else None)
    try:
        db.session.add(deployment)
        db.session.flush()
        job = create_job("deploy", project_id=project.id, release_id=release.id,
                         payload={"deployment_id": deployment.id}, requested_by=actor)
        deployment.job_id = job.id
        audit.record(actor, "deploy.request", project_id=project.id,
                     target=f"deployment:{deployment.id}",
                     before={"environment": env.name,
                             "version": previous.release.version if previous else None},
                     after={"environment": env.name, "version": release.version,
                            "deployment": deployment.id, "status": "queued",
                            "rollback": verdict.rollback, "freeze_exception": through_freeze},
                     detail="\n".join(verdict.notes))
        db.session.commit()
    except IntegrityError:
        # Another request took the environment between our check and our insert: the
        # partial unique index refused the second active deployment. Say who holds it.
        db.session.rollback()
        log.info("deploy of %s to %s lost the race for the environment", release.version, env.name)
        again = deploy_verdict(release, env, actor, rollback_reason=rollback_reason,
                               freeze_reason=freeze_reason)
        if not again.allowed:
            raise _refused(again) from None
        raise Conflict(f"{env.name} is busy: another deploy was asked for at the same moment; "
                       f"try again.", code="deploy_refused",
                       reasons=[{"code": "busy", "sentence": f"{env.name} is busy"}]) from None
    dispatch(job)
    return deployment


# -- the report back, cancelling --------------------------------------------------------------


def finish(deployment_id: int, attempt: int, status: str, message: str | None, *,
           actor: User | str | None, action: str, project_id: int | None,
           only_waiting: bool = False) -> bool:
    """End a running deployment, fenced by its attempt; False (nothing written) when stale.

    Its own retried write transaction (it joins one the caller runs)."""
    return in_write_transaction(_finish, deployment_id, attempt, status, message, actor=actor,
                                action=action, project_id=project_id, only_waiting=only_waiting)


def _finish(deployment_id: int, attempt: int, status: str, message: str | None, *,
            actor: User | str | None, action: str, project_id: int | None,
            only_waiting: bool) -> bool:
    now = utcnow()
    query = update(Deployment).where(Deployment.id == deployment_id,
                                      Deployment.attempt == attempt,
                                      Deployment.status == "running")
    if only_waiting:
        query = query.where(Deployment.waiting_until.is_not(None))
    changed = db.session.execute(query.values(
        status=status, message=message, finished_at=now, lease_until=None,
        waiting_until=None)).rowcount
    if not changed:
        return False
    audit.record(actor, action, project_id=project_id, target=f"deployment:{deployment_id}",
                 before={"status": "running", "attempt": attempt},
                 after={"status": status, "attempt": attempt, "message": message})
    if status == "succeeded":
        # What runs there is known again, however the success was reported (the worker, a CD
        # system's report, a person marking a manual deploy done).
        env_id = select(Deployment.environment_id).where(Deployment.id == deployment_id)
        db.session.execute(update(Environment).where(
            Environment.id == env_id.scalar_subquery(), Environment.unknown_reason.is_not(None))
            .values(unknown_reason=None, unknown_since=None))
    return True


LOG_LINE_ATTEMPTS = 5


def write_line(joblog: Any, line: str) -> None:
    """Write a log line even when another process wrote to the same job log meanwhile, or the
    database was busy a moment.

    JobLog numbers lines from a counter it read once; a report, a cancel or the reaper may add a
    line to a running job's log from another process, and then the next number is taken. On that
    conflict, catch up with the stored numbering and write again; on a busy database (or a
    dropped connection) also, after a short pause. A line that cannot be stored after a few
    tries is logged and skipped: the deploy's own record is what must not be lost.
    """
    from ..models import JobLogLine

    for attempt in range(1, LOG_LINE_ATTEMPTS + 1):
        try:
            joblog.write(line)
            return
        except IntegrityError:
            pass
        except DBAPIError as exc:
            if not retryable(exc):
                raise
            time.sleep(backoff(attempt))
        try:
            with db.engine.connect() as conn:
                joblog.seq = conn.execute(select(func.max(JobLogLine.seq)).where(
                    JobLogLine.job_id == joblog.job_id)).scalar() or 0
        except DBAPIError as exc:
            if not retryable(exc):
                raise
    log.warning("job %s: could not store a log line after %d tries", joblog.job_id,
                LOG_LINE_ATTEMPTS)


def append_log(job_id: int | None, line: str, event: dict[str, Any] | None = None) -> None:
    """Add one line (and optionally a status event) to a job's log from outside the job."""
    if job_id is None:
        return
    from ..joblog import JobLog, publish

    joblog = JobLog(job_id)
    # JobLog read its last sequence number through the session; end that read before the log
    # line's own connection writes (SQLite takes the write lock at BEGIN).
    db.session.commit()
    write_line(joblog, line)
    if event is not None:
        publish(job_id, event)


def report_status(deployment: Deployment, status: str, *, attempt: int | None,
                  message: str | None, actor: User | str) -> Deployment:
    """Record the CD system's (or a person's) report that a running deploy succeeded or failed."""
    if status not in ("succeeded", "failed"):
        raise ServiceError("The status must be 'succeeded' or 'failed'.", code="invalid_field")
    if message is not None and not isinstance(message, str):
        raise ServiceError("The message must be text.", code="invalid_field")
    message = (message or "").strip()[:2000] or None
    if attempt is None:
        attempt = deployment.attempt
    deployment_id, job_id = deployment.id, deployment.job_id
    project_id = deployment.release.project_id
    env_name = deployment.environment.name
    if deployment.status == status and deployment.attempt == attempt:
        return deployment  # the same report again (a retried callback): nothing more to do
    if deployment.status != "running":
        raise Conflict(f"Deployment {deployment_id} is {deployment.status}, not running: "
                       f"a report can only end a running deploy.", code="not_running")
    if deployment.attempt != attempt:
        raise Conflict(f"Deployment {deployment_id} is on attempt {deployment.attempt}, not "
                       f"{attempt}: this report is for an earlier run and was ignored.",
                       code="stale_attempt")
    kind = (deployment.environment.driver or {}).get("kind")
    if deployment.waiting_until is None and kind != "webhook":
        # A command deploy is run by relapp's worker, which records its end itself; a CD system
        # may answer before its webhook call returns, so only webhooks may report this early.
        raise Conflict(f"Deployment {deployment_id} is being run by relapp's worker and ends by "
                       f"itself; cancel it to stop it.", code="not_waiting")
    who = actor.username if isinstance(actor, User) else actor
    if not finish(deployment_id, attempt, status, message or f"reported {status} by {who}",
                  actor=actor, action="deploy.report", project_id=project_id):
        db.session.expire_all()
        current = get_deployment(deployment_id)
        raise Conflict(f"Deployment {deployment_id} changed meanwhile (it is now "
                       f"{current.status}); the report was ignored.", code="not_running")
    append_log(job_id, f"{who} reported {status} for {env_name}" + (f": {message}" if message else ""),
               {"type": "deployment", "deployment": deployment_id, "status": status})
    db.session.expire_all()
    return get_deployment(deployment_id)


def accept_report(deployment_id: int, raw_body: bytes, signature_header: str) -> tuple[Deployment, Any]:
    """A CD system's report, checked against the environment's webhook secret before it is read:
    the deployment and the decoded body; Unsigned when the signature does not hold.

    Fails closed: without a webhook secret (or without such a deployment) no signature is valid.
    """
    deployment = db.session.get(Deployment, deployment_id)
    settings = (deployment.environment.driver or {}) if deployment is not None else {}
    secret = signing_secret(settings)  # the literal secret, or secret_env's variable, read now
    if deployment is None or secret is None or not verify(secret, raw_body, signature_header):
        raise Unsigned(UNSIGNED)
    try:
        data = json.loads(raw_body)
    except (ValueError, RecursionError):  # RecursionError: nested beyond the parser's depth
        data = None
    if not isinstance(data, dict):
        raise ServiceError("The request body must be a JSON object.", code="invalid_json")
    return deployment, data


def report_actor(deployment: Deployment) -> str:
    """Who a signed report is recorded as: the CD system of the deployment's environment."""
    return f"cd:{deployment.environment.name}"


def cancel(deployment: Deployment, actor: User, *, reason: str | None = None) -> Deployment:
    """Cancel a queued or waiting deploy at once, or ask a running one to stop (a database flag)."""
    release = deployment.release
    mine = deployment.requested_by_id == actor.id
    if not (mine or actor.role in (Role.RELEASE, Role.ADMIN)):
        raise Forbidden(f"Only {deployment.requested_by.username if deployment.requested_by else 'its requester'} "
                        f"or a release manager or admin may cancel deployment {deployment.id}.")
    if deployment.status not in ACTIVE:
        raise Conflict(f"Deployment {deployment.id} is already {deployment.status}; there is "
                       f"nothing to cancel.", code="not_active")
    reason = _reason(reason, "reason")
    message = f"cancelled by {actor.username}" + (f": {reason}" if reason else "")
    deployment_id, job_id = deployment.id, deployment.job_id
    before = {"status": deployment.status, "attempt": deployment.attempt}
    outcome = in_write_transaction(_cancel, deployment_id, deployment.attempt, job_id,
                                   release.project_id, actor, message, before)
    if outcome == "cancelled":
        append_log(job_id, message, {"type": "deployment", "deployment": deployment_id,
                                     "status": "cancelled"})
    elif outcome == "requested":
        append_log(job_id, f"{message}; stopping the deploy")
    db.session.expire_all()
    return get_deployment(deployment_id)


def _cancel(deployment_id: int, attempt: int, job_id: int | None, project_id: int, actor: User,
            message: str, before: dict[str, Any]) -> str:
    """The writes of `cancel`: "cancelled", "requested" (a running driver will stop) or ""."""
    now = utcnow()
    done = db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.status == "queued").values(
        status="cancelled", message=message, finished_at=now)).rowcount
    if not done:
        # Handed off (webhook / manual): no process of ours runs, so end it now.
        done = db.session.execute(update(Deployment).where(
            Deployment.id == deployment_id, Deployment.status == "running",
            Deployment.attempt == attempt, Deployment.waiting_until.is_not(None)).values(
            status="cancelled", message=message, finished_at=now, waiting_until=None,
            lease_until=None)).rowcount
    if done:
        if job_id is not None:
            db.session.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
                status="cancelled", error=message, finished_at=now))
        audit.record(actor, "deploy.cancel", project_id=project_id,
                     target=f"deployment:{deployment_id}", before=before,
                     after={"status": "cancelled"}, detail=message)
        return "cancelled"
    # A driver is running: its job polls this flag, stops its process group and then records
    # the deployment as cancelled itself, so the environment is never freed early.
    changed = db.session.execute(update(Deployment).where(
        Deployment.id == deployment_id, Deployment.status == "running",
        Deployment.cancel_requested_at.is_(None)).values(cancel_requested_at=now)).rowcount
    if not changed:
        return ""
    audit.record(actor, "deploy.cancel_request", project_id=project_id,
                 target=f"deployment:{deployment_id}", before=before,
                 after={"status": "running", "cancel_requested": True}, detail=message)
    return "requested"


# -- locks and freezes ------------------------------------------------------------------------


def _guard_admin(actor: User, what: str, env: Environment) -> None:
    if actor.role not in (Role.RELEASE, Role.ADMIN):
        raise Forbidden(f"Only a release manager or an admin may {what} {env.name}; you are "
                        f"{actor.role}.")


def _set_state(project: Project, env_name: str, actor: User, *, flag: str, on: bool,
               reason: str | None, verbs: tuple[str, str], adjective: str) -> Environment:
    env = get_environment(project, env_name)
    _guard_admin(actor, f"{verbs[0]} or {verbs[1]}", env)
    reason = _reason(reason, "reason")
    if on and not reason:
        raise ServiceError(f"Say why {env.name} is {adjective}: give a reason.", code="missing_field")
    field = f"{'lock' if flag == 'locked' else 'freeze'}_reason"
    before = {flag: getattr(env, flag), field: getattr(env, field)}
    setattr(env, flag, on)
    setattr(env, field, reason if on else None)
    audit.record(actor, f"environment.{verbs[0] if on else verbs[1]}",
                 project_id=project.id, target=f"environment:{project.key}/{env.name}",
                 before=before, after={flag: on, field: getattr(env, field)}, detail=reason or "")
    db.session.commit()
    return env


def set_lock(project: Project, env_name: str, actor: User, *, locked: bool,
             reason: str | None = None) -> Environment:
    """Lock an environment (no deploys, with a reason) or unlock it; audited."""
    return _set_state(project, env_name, actor, flag="locked", on=locked, reason=reason,
                      verbs=("lock", "unlock"), adjective="locked")


def set_freeze(project: Project, env_name: str, actor: User, *, frozen: bool,
               reason: str | None = None) -> Environment:
    """Freeze an environment (only hotfixes with a reason pass) or unfreeze it; audited."""
    return _set_state(project, env_name, actor, flag="frozen", on=frozen, reason=reason,
                      verbs=("freeze", "unfreeze"), adjective="frozen")
