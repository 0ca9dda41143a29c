"""Read models for the kanban: which column each release sits in, and what its card shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..domain import pipeline
from ..extensions import db
from ..models import Decision, Deployment, Job, Project, Release


@dataclass
class Card:
    release: Release
    stage: str
    qa_state: str
    bugs: list[str]
    deployed_in: list[str]
    active: Deployment | None
    job: Job | None
    next_env: str | None


@dataclass
class Column:
    name: str
    title: str
    cards: list[Card] = field(default_factory=list)


def decision_facts(decisions: list[Decision]) -> list[pipeline.DecisionFacts]:
    """Decisions as the pipeline rules see them."""
    return [pipeline.DecisionFacts(environment=d.environment.name, decision=d.decision,
                                   by=d.by.username if d.by else "?", at=d.created_at,
                                   comment=d.comment, bugs=tuple(d.bugs or ()))
            for d in decisions]


def card_for(project: Project, release: Release) -> Card:
    """One release's card: its stage, QA state, bugs and running work."""
    envs = list(project.environments)
    succeeded = {d.environment_id for d in release.deployments if d.status == "succeeded"}
    stage = pipeline.stage_of((env.name, env.id in succeeded) for env in envs)
    facts = decision_facts(release.decisions)
    first = envs[0].name if envs else ""
    qa = pipeline.qa_state(facts, first) if envs else "pending"
    current = pipeline.current_decision(facts, first) if envs else None
    bugs = list(current.bugs) if current and current.decision == "no-go" else []
    active = next((d for d in release.deployments if d.status in ("queued", "running")), None)
    job = None
    if release.state == "pending":
        job = db.session.scalar(select(Job).where(Job.release_id == release.id,
                                                  Job.kind.in_(("tag_release", "hotfix")))
                                .order_by(Job.id.desc()))
    names = [env.name for env in envs]
    position = names.index(stage) if stage in names else -1
    next_env = names[position + 1] if position + 1 < len(names) else None
    return Card(release=release, stage=stage, qa_state=qa, bugs=bugs,
                deployed_in=[env.name for env in envs if env.id in succeeded],
                active=active, job=job, next_env=next_env)


def board(project: Project, *, limit: int = 60) -> list[Column]:
    """Columns cut, then each environment in order, with the newest releases' cards."""
    columns = [Column("cut", "Cut")] + [Column(env.name, env.name.upper()) for env in project.environments]
    by_name = {column.name: column for column in columns}
    releases = db.session.scalars(
        select(Release).where(Release.project_id == project.id)
        .options(selectinload(Release.deployments), selectinload(Release.decisions))
        .order_by(Release.major.desc(), Release.minor.desc(), Release.patch.desc(), Release.id.desc())
        .limit(limit)).all()
    for release in releases:
        card = card_for(project, release)
        by_name.get(card.stage, columns[0]).cards.append(card)
    return columns


def project_summary(project: Project) -> dict[str, Any]:
    """Small facts shown above the board."""
    return {"key": project.key, "name": project.name, "environments": [e.name for e in project.environments]}
