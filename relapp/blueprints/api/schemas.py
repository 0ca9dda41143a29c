"""Every JSON shape of the API as a pydantic model: what the responses hold, what request bodies
may hold. Views build responses with `dump(Model.of(...))` and read bodies with
`load(Model, data)`; the OpenAPI document takes its schemas from here.

Builders (`of`) read the rows and read-models the services return; they never query by
themselves beyond the rows' own relationships.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from ...domain.secretmask import redact_value
from ...exceptions import ServiceError
from ...services.adoption import AdoptionReport
from ...services.decisions import MAX_COMMENT
from ...services.deployments import MAX_REASON, EnvironmentState
from ...services.environments import unknown_label
from ...services.projects import issue_url
from ...services.queue import JobLogPage
from ...services.releases import ReleaseDetails

# Timestamps keep the shape the API always had: Python's isoformat ("…+00:00"), not "Z".
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]
M = TypeVar("M", bound=BaseModel)


class Out(BaseModel):
    """A response shape: built from rows, every field given (optional extras excepted)."""

    model_config = ConfigDict(from_attributes=True)


def dump(model: BaseModel) -> dict[str, Any]:
    """A response model as JSON-ready data (fields never given, like `fixes_on_main`, left out)."""
    return model.model_dump(mode="json", exclude_unset=True)


# -- responses --------------------------------------------------------------------------------


class Problem(Out):
    """An RFC 9457 problem (errors of every status); gate refusals add `reasons`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


class Team(Out):
    name: str
    paths: list[str]


class ProjectOut(Out):
    key: str
    name: str
    main_branch: str
    tag_template: str
    release_branch_template: str
    environments: list[str]
    teams: list[Team]

    @classmethod
    def of(cls, project: Any) -> ProjectOut:
        return cls(key=project.key, name=project.name, main_branch=project.main_branch,
                   tag_template=project.tag_template,
                   release_branch_template=project.release_branch_template,
                   environments=[env.name for env in project.environments],
                   teams=[Team(name=t.name, paths=list(t.paths)) for t in project.teams])


class Projects(Out):
    projects: list[ProjectOut]


class JobOut(Out):
    id: int
    kind: str
    status: str
    error: str | None
    attempt: int
    enqueued: bool
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    url: str
    stream_url: str

    @classmethod
    def of(cls, job: Any) -> JobOut:
        return cls(id=job.id, kind=job.kind, status=job.status, error=job.error,
                   attempt=job.attempt, enqueued=job.enqueued_at is not None,
                   created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, url=f"/api/v1/jobs/{job.id}",
                   stream_url=f"/api/v1/jobs/{job.id}/stream")

    @classmethod
    def maybe(cls, job: Any) -> JobOut | None:
        return cls.of(job) if job is not None else None


class LogLineOut(Out):
    seq: int
    at: Timestamp
    line: str


class JobWithLog(JobOut):
    deployment_id: int | None
    lines: list[LogLineOut]
    more: bool

    @classmethod
    def of_page(cls, page: JobLogPage) -> JobWithLog:
        base = JobOut.of(page.job).model_dump()
        return cls(**base, deployment_id=page.deployment_id,
                   lines=[LogLineOut(seq=ln.seq, at=ln.at, line=ln.line) for ln in page.lines],
                   more=page.more)


class JobEnvelope(Out):
    job: JobWithLog


class ReleaseOut(Out):
    version: str
    kind: str
    tag: str | None
    commit: str | None
    state: str
    source: str
    follows: str | None
    base: str | None
    created_at: Timestamp
    created_by: str | None
    tagged_at: Timestamp | None
    reason: str | None

    @staticmethod
    def fields_of(release: Any) -> dict[str, Any]:
        return {
            "version": release.version, "kind": release.kind, "tag": release.tag,
            "commit": release.sha, "state": release.state, "source": release.source,
            "follows": release.follows.version if release.follows
            else (release.details or {}).get("follows"),
            "base": release.base.version if release.base else None,
            "created_at": release.created_at,
            "created_by": release.created_by.username if release.created_by else None,
            "tagged_at": release.tagged_at, "reason": release.reason,
        }

    @classmethod
    def of(cls, release: Any) -> ReleaseOut:
        return cls(**cls.fields_of(release))


class Releases(Out):
    releases: list[ReleaseOut]


class ReleaseDeployment(Out):
    id: int
    environment: str
    status: str
    requested_by: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    rollback_reason: str | None
    message: str | None


class ReleaseDecision(Out):
    environment: str
    decision: str
    comment: str | None
    bugs: list[str]
    by: str | None
    at: Timestamp


class ReleaseFull(ReleaseOut):
    details: dict[str, Any]
    deployments: list[ReleaseDeployment]
    decisions: list[ReleaseDecision]
    hotfixes: list[str]
    jobs: list[JobOut]
    # Only for a tagged hotfix (and unless ?fixes=0): whether each fix is on main too.
    fixes_on_main: dict[str, str] | None = None

    @classmethod
    def of_details(cls, found: ReleaseDetails) -> ReleaseFull:
        release = found.release
        extra: dict[str, Any] = {}
        if found.fixes_on_main is not None:
            extra["fixes_on_main"] = found.fixes_on_main
        return cls(
            **cls.fields_of(release),
            details=release.details or {},
            deployments=[ReleaseDeployment(
                id=d.id, environment=d.environment.name, status=d.status,
                requested_by=d.requested_by.username if d.requested_by else None,
                created_at=d.created_at, finished_at=d.finished_at,
                rollback_reason=d.rollback_reason, message=d.message) for d in release.deployments],
            decisions=[ReleaseDecision(
                environment=d.environment.name, decision=d.decision, comment=d.comment,
                bugs=list(d.bugs or []), by=d.by.username if d.by else None, at=d.created_at)
                for d in release.decisions],
            hotfixes=[r.version for r in found.hotfixes],
            jobs=[JobOut.of(j) for j in found.jobs],
            **extra)


class CutAccepted(Out):
    version: str
    tag: str | None
    commit: str | None
    follows: str | None
    release: ReleaseOut
    job: JobOut

    @classmethod
    def of(cls, release: Any, job: Any) -> CutAccepted:
        shown = ReleaseOut.of(release)
        return cls(version=release.version, tag=release.tag, commit=release.sha,
                   follows=shown.follows, release=shown, job=JobOut.of(job))


class NextOut(Out):
    """What a cut from `ref` would make: version, tag, the release it follows and why."""

    ref: str
    commit: str
    version: str
    tag: str
    previous: str | None
    previous_tag: str | None
    commit_count: int
    bump: str
    why: str
    notes: list[str]
    fetched_at: Timestamp | None

    @classmethod
    def of(cls, p: Any) -> NextOut:
        fetched = datetime.fromtimestamp(p.fetched_at, tz=UTC) if p.fetched_at is not None else None
        return cls(ref=p.ref, commit=p.sha, version=str(p.version), tag=p.tag,
                   previous=str(p.previous) if p.previous else None, previous_tag=p.previous_tag,
                   commit_count=p.commit_count, bump=p.bump, why=p.why, notes=list(p.notes),
                   fetched_at=fetched)


class HotfixAccepted(Out):
    version: str
    tag: str | None
    base: str | None
    branch: str | None
    release: ReleaseOut
    job: JobOut

    @classmethod
    def of(cls, release: Any, job: Any) -> HotfixAccepted:
        return cls(version=release.version, tag=release.tag,
                   base=release.base.version if release.base else None,
                   branch=(release.details or {}).get("branch"), release=ReleaseOut.of(release),
                   job=JobOut.of(job))


class ChangelogEntry(Out):
    sha: str
    short_sha: str
    type: str | None
    scope: str | None
    breaking: bool
    section: str
    description: str
    subject: str
    pr: int | None
    issues: list[str]
    author: str
    author_email: str
    co_authors: list[str]
    teams: list[str]
    cherry_picked_from: str | None
    pr_url: str | None = None  # given only when the project has a pr_url_template


class TeamSection(Out):
    section: str
    shas: list[str]


class ChangelogMerge(Out):
    sha: str
    short_sha: str
    subject: str
    pr: int | None
    author: str
    pr_url: str | None = None  # given only when the project has a pr_url_template


class ChangelogCancelled(Out):
    sha: str
    short_sha: str
    subject: str
    author: str
    merge: bool
    reverts: str | None
    reverted_by: list[str]
    merged_by: str | None


class ChangelogOut(Out):
    version: str
    since: str | None
    commit_count: int
    entries: list[ChangelogEntry]
    by_team: dict[str, list[TeamSection]]
    non_conventional_count: int
    merge_count: int
    merges: list[ChangelogMerge]
    cancelled: list[ChangelogCancelled]
    cancelled_reverts: list[str]

    @classmethod
    def of(cls, version: str, since: str | None, data: dict[str, Any]) -> ChangelogOut:
        """From the domain's changelog JSON (`changelog.to_json`)."""
        return cls.model_validate({"version": version, "since": since, **data})


class RecognisedTag(Out):
    tag: str
    version: str
    commit: str
    rule: str


class SetAsideTag(Out):
    tag: str
    reason: str


class TagConflict(Out):
    """Something a person settles: `same_version` (two tags, one version, different commits),
    `not_on_main` (an X.Y.0 cut from a branch that never merged back) or `variant` (another
    product's tags carrying the same numbers); `settle` says what to do. `with_rules_to_add`:
    it arises only once the proposed rules read more tags."""

    kind: str
    version: str
    tags: list[str]
    commits: list[str]
    settle: str
    with_rules_to_add: bool


class TagShape(Out):
    """Unread tags of one shape (`product-N_N_N`), the rule that would read or ignore them
    (`key` is the TOML key it goes in), and what a cut from main would get under that rule."""

    shape: str
    count: int
    examples: list[str]
    kind: str
    key: str
    proposed: str
    next_version: str | None
    next_follows: str | None
    next_refusal: str | None


class TagUnderstanding(Out):
    version_like: int
    read: int
    not_understood: int
    refusal: str | None


class Adoption(Out):
    """The adoption page as data. The tag lists hold at most the first 200 of each kind;
    `*_count` says how many there are. `snippet` is TOML to add to the project's table."""

    understanding: TagUnderstanding
    shapes: list[TagShape]
    more_shapes: int
    conflicts: list[TagConflict]
    snippet: str | None
    snippet_note: str | None
    proposed_next: str | None
    proposed_refusal: str | None
    recognised: list[RecognisedTag]
    recognised_count: int
    ignored: list[SetAsideTag]
    ignored_count: int
    unknown: list[SetAsideTag]
    unknown_count: int
    main_follows: str | None
    main_next: str | None
    main_refusal: str | None

    @classmethod
    def of(cls, report: AdoptionReport) -> Adoption:
        data = {name: getattr(report, name) for name in cls.model_fields if hasattr(report, name)}
        data["understanding"] = {"version_like": report.version_like, "read": report.read,
                                 "not_understood": report.not_understood, "refusal": report.refusal}
        return cls.model_validate(data)


class DeployedRelease(Out):
    version: str
    tag: str | None
    commit: str | None
    kind: str


class DeploymentOut(Out):
    id: int
    project: str
    environment: str
    release: DeployedRelease
    status: str
    waiting: bool
    attempt: int
    requested_by: str | None
    previous_version: str | None
    rollback_reason: str | None
    freeze_reason: str | None
    message: str | None
    cancel_requested: bool
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    lease_until: Timestamp | None
    waiting_until: Timestamp | None
    job: JobOut | None
    url: str

    @classmethod
    def of(cls, deployment: Any) -> DeploymentOut:
        release = deployment.release
        return cls(
            id=deployment.id, project=release.project.key,
            environment=deployment.environment.name,
            release=DeployedRelease(version=release.version, tag=release.tag, commit=release.sha,
                                    kind=release.kind),
            status=deployment.status,
            waiting=deployment.status == "running" and deployment.waiting_until is not None,
            attempt=deployment.attempt,
            requested_by=deployment.requested_by.username if deployment.requested_by else None,
            previous_version=deployment.previous_version,
            rollback_reason=deployment.rollback_reason, freeze_reason=deployment.freeze_reason,
            message=deployment.message,
            cancel_requested=deployment.cancel_requested_at is not None,
            created_at=deployment.created_at, started_at=deployment.started_at,
            finished_at=deployment.finished_at, lease_until=deployment.lease_until,
            waiting_until=deployment.waiting_until, job=JobOut.maybe(deployment.job),
            url=f"/api/v1/deployments/{deployment.id}")


class DeploymentEnvelope(Out):
    deployment: DeploymentOut


class DeployAccepted(Out):
    deployment: DeploymentOut
    job: JobOut | None


class CurrentRelease(Out):
    version: str
    tag: str | None
    deployed_at: Timestamp | None
    deployed_by: str | None
    deployment_id: int


class EnvironmentOut(Out):
    name: str
    position: int
    requires_go_from: str | None
    deploy_roles: list[str]
    decide_roles: list[str]
    separation_of_duties: bool
    # Only the kind: driver settings hold secrets.
    driver: str | None
    current: CurrentRelease | None
    active_deployment: DeploymentOut | None
    locked: bool
    lock_reason: str | None
    frozen: bool
    freeze_reason: str | None
    version_url: str | None
    observed_version: str | None
    observed_at: Timestamp | None
    observed_error: str | None
    # "unknown: last deploy abandoned" until a verification or a successful deploy there.
    unknown: str | None
    unknown_since: Timestamp | None

    @classmethod
    def of(cls, state: EnvironmentState) -> EnvironmentOut:
        env, current, active = state.environment, state.current, state.active
        return cls(
            name=env.name, position=env.position, requires_go_from=env.requires_go_from,
            deploy_roles=list(env.deploy_roles or ()), decide_roles=list(env.decide_roles or ()),
            separation_of_duties=env.separation_of_duties,
            driver=(env.driver or {}).get("kind"),
            current=CurrentRelease(
                version=current.release.version, tag=current.release.tag,
                deployed_at=current.finished_at,
                deployed_by=current.requested_by.username if current.requested_by else None,
                deployment_id=current.id) if current else None,
            active_deployment=DeploymentOut.of(active) if active else None,
            locked=env.locked, lock_reason=env.lock_reason, frozen=env.frozen,
            freeze_reason=env.freeze_reason, version_url=env.version_url,
            observed_version=env.observed_version, observed_at=env.observed_at,
            observed_error=env.observed_error, unknown=unknown_label(env),
            unknown_since=env.unknown_since)


class Environments(Out):
    project: str
    environments: list[EnvironmentOut]


class EnvironmentEnvelope(Out):
    environment: EnvironmentOut


class BugLink(Out):
    key: str
    url: str | None


class DecisionOut(Out):
    id: int
    release: str
    environment: str
    decision: str
    comment: str | None
    bugs: list[BugLink]
    by: str | None
    at: Timestamp

    @classmethod
    def of(cls, decision: Any) -> DecisionOut:
        project = decision.release.project
        return cls(id=decision.id, release=decision.release.version,
                   environment=decision.environment.name, decision=decision.decision,
                   comment=decision.comment,
                   bugs=[BugLink(key=key, url=issue_url(project, key)) for key in decision.bugs or ()],
                   by=decision.by.username if decision.by else None, at=decision.created_at)


class DecisionEnvelope(Out):
    decision: DecisionOut


class AuditEventOut(Out):
    id: int
    at: Timestamp
    actor: str
    action: str
    project: str | None
    target: str | None
    before: Any
    after: Any
    detail: str | None

    @classmethod
    def of(cls, event: Any, projects: dict[int, str]) -> AuditEventOut:
        """The event as a viewer may see it: any URL credential an older row holds redacted."""
        return cls(id=event.id, at=event.at, actor=event.actor, action=event.action,
                   project=projects.get(event.project_id) if event.project_id else None,
                   target=redact_value(event.target), before=redact_value(event.before),
                   after=redact_value(event.after), detail=redact_value(event.detail))


class AuditPage(Out):
    events: list[AuditEventOut]
    # The next (older) page, or None on the last one.
    next: str | None


# -- request bodies ---------------------------------------------------------------------------


class In(BaseModel):
    """A request body: strict types (no "1" for 1, no true for 1), unknown fields ignored, and a
    field sent as null counts as not sent."""

    model_config = ConfigDict(strict=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _text(max_length: int = 2000, *, one_of: list[str] | None = None) -> Any:
    extra = {"enum": one_of} if one_of else None
    return Field(default=None, max_length=max_length, json_schema_extra=extra)


class CutIn(In):
    ref: str | None = _text(200)
    bump: str | None = _text(10, one_of=["minor", "major"])
    reason: str | None = _text()
    confirm_baseline: bool = False


class HotfixIn(In):
    commits: list[Any] | None = None
    branch_head: bool = False
    force_reason: str | None = _text()


class DeployIn(In):
    environment: str = Field(max_length=64)
    rollback_reason: str | None = _text(MAX_REASON)
    freeze_reason: str | None = _text(MAX_REASON)


class DecisionIn(In):
    environment: str = Field(max_length=64)
    decision: str = Field(max_length=16, json_schema_extra={"enum": ["go", "no-go"]})
    comment: str | None = _text(MAX_COMMENT)
    bugs: list[Any] | None = None


class LockIn(In):
    locked: bool = True
    reason: str | None = _text(MAX_REASON)


class FreezeIn(In):
    frozen: bool = True
    reason: str | None = _text(MAX_REASON)


class StatusReportIn(In):
    """A person's report (with a token): the attempt defaults to the current one."""

    attempt: int | None = None
    status: str = Field(max_length=16, json_schema_extra={"enum": ["succeeded", "failed"]})
    message: str | None = _text()


class SignedStatusReportIn(StatusReportIn):
    """The CD system's signed report names the attempt it ran."""

    attempt: int  # type: ignore[assignment]


class CancelIn(In):
    reason: str | None = _text(MAX_REASON)


def load(model: type[M], data: dict[str, Any]) -> M:
    """A request body as `model`, or a 400 naming the first wrong field in a sentence."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "body"
        if error["type"] == "missing":
            raise ServiceError(f"The field '{name}' is required.", code="missing_field") from None
        if error["type"] == "string_too_long":
            limit = (error.get("ctx") or {}).get("max_length")
            raise ServiceError(f"The field '{name}' is longer than {limit} characters.",
                               code="invalid_field") from None
        raise ServiceError(f"The field '{name}' has the wrong type.", code="invalid_field") from None
