"""Go / no-go decisions: recorded through the pipeline rules, for a release that runs there."""

from __future__ import annotations

from sqlalchemy import select

from ..domain import pipeline
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Decision, Deployment, Environment, Project, Release, User
from . import audit
from .deployments import (
    actor_of,
    current_deployment,
    decision_facts,
    deployed_by,
    environment_facts,
    release_facts,
)
from .projects import get_environment

MAX_COMMENT = 4000
MAX_BUGS = 50
# Refusals the caller fixes by changing the request itself (400) rather than the state (409).
BAD_INPUT = {"bad-decision", "needs-comment", "bad-issue-key", "bad-issue-pattern"}


def deployed_in(release: Release, env: Environment) -> bool:
    """True when the release's latest deployment in `env` succeeded and is what runs there."""
    latest = db.session.scalar(select(Deployment).where(
        Deployment.release_id == release.id, Deployment.environment_id == env.id)
        .order_by(Deployment.id.desc()).limit(1))
    current = current_deployment(env)
    return (latest is not None and latest.status == "succeeded" and current is not None
            and current.release_id == release.id)


def record_decision(project: Project, release: Release, env_name: str, actor: User,
                    decision: str, comment: str | None, bugs: list[str] | None) -> Decision:
    """Record a go or no-go on `release` in `env_name` if the rules allow it; else 4xx with why."""
    env = get_environment(project, env_name)
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise ServiceError(f"A comment is at most {MAX_COMMENT} characters.", code="invalid_field")
    if bugs is not None and (not isinstance(bugs, list) or not all(isinstance(b, str) for b in bugs)):
        raise ServiceError("Bugs are a list of issue keys such as [\"SHOP-12\"].", code="invalid_field")
    keys = list(dict.fromkeys(b.strip() for b in bugs or () if b.strip()))
    if len(keys) > MAX_BUGS:
        raise ServiceError(f"At most {MAX_BUGS} bug keys per decision.", code="invalid_field")
    verdict = pipeline.check_decision(
        release_facts(release), environment_facts(env), actor=actor_of(actor),
        decision=decision, comment=comment, bugs=keys, issue_pattern=project.issue_key_pattern,
        deployed_in_env=deployed_in(release, env), deployed_by=deployed_by(release, env),
        cut_by=release.created_by.username if release.created_by else None)
    if not verdict.allowed:
        reasons = [{"code": r.code, "sentence": r.sentence} for r in verdict.reasons]
        codes = set(verdict.codes)
        status = 403 if "not-allowed" in codes else 400 if codes <= BAD_INPUT else 409
        raise ServiceError(verdict.message, status=status, code="decision_refused", reasons=reasons)
    previous = pipeline.current_decision(decision_facts(list(release.decisions)), env.name)
    row = Decision(release_id=release.id, environment_id=env.id, decision=decision,
                   comment=comment, bugs=keys, by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "decision.record", project_id=project.id,
                 target=f"release:{project.key}/{release.version}",
                 before={"environment": env.name, "decision": previous.decision,
                         "by": previous.by} if previous else None,
                 after={"environment": env.name, "decision": decision, "comment": comment,
                        "bugs": keys, "decision_id": row.id},
                 detail=f"{decision} on {release.version} in {env.name}")
    db.session.commit()
    return row
