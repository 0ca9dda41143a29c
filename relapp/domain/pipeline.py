"""Pipeline rules: which deploy or decision is allowed, and in plain words why not.

Everything here is a pure function over frozen records that services fill from the
database. A check never stops at the first problem: it collects every refusal, in a
fixed order, so the user can fix them all at once.

Refusal order for :func:`check_deploy` (``DEPLOY_REFUSAL_ORDER``)::

    not-tagged, not-allowed, locked, frozen, busy, needs-go, go-not-independent,
    go-giver-deploys, rollback-needs-reason

Refusal order for :func:`check_decision` (``DECISION_REFUSAL_ORDER``)::

    bad-decision, not-allowed, not-deployed, needs-comment, bad-issue-pattern,
    bad-issue-key (one per bad key, in the order given), not-independent

Separation of duties (``EnvironmentFacts.separation_of_duties``) is about people, not
roles, so an admin is bound by it like anyone else, and no setting lifts it. With it on:

- nobody gives the go for a release they cut, or deployed to that environment
  (``not-independent`` when deciding; ``go-not-independent`` when a deploy relies on such
  a go, which also catches goes recorded before the rule was switched on);
- nobody deploys to an environment whose required go they gave (``go-giver-deploys``):
  the one who approves and the one who ships are two people.

It only restricts a *go*: anyone allowed to decide may still say no-go on a release they
cut or deployed, because stopping a release never needs a second pair of eyes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

import semver

__all__ = [
    "DECISION_REFUSAL_ORDER",
    "DEPLOY_REFUSAL_ORDER",
    "ActiveDeployment",
    "Actor",
    "DecisionFacts",
    "DeployRequest",
    "EnvironmentFacts",
    "Refusal",
    "ReleaseFacts",
    "Role",
    "Verdict",
    "check_decision",
    "check_deploy",
    "current_decision",
    "next_environment",
    "qa_state",
    "stage_of",
]

CUT_STAGE = "cut"
DECISIONS = ("go", "no-go")
# Bug keys longer than this are refused before the user's regex sees them: a
# pathological project pattern cannot then spend long on a pasted paragraph.
MAX_ISSUE_KEY_LENGTH = 64


class Role(StrEnum):
    """What a signed-in person may do; ADMIN may do everything a role grants."""

    VIEWER = "viewer"
    QA = "qa"
    ENGINEER = "engineer"
    RELEASE = "release"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ReleaseFacts:
    """The parts of a release the gates look at."""

    version: semver.Version
    kind: str  # "major" | "minor" | "hotfix"
    tagged: bool
    sha: str | None
    cut_by: str | None


@dataclass(frozen=True, slots=True)
class ActiveDeployment:
    """A deployment that still holds its environment."""

    version: semver.Version
    state: str  # "queued" | "running"
    requested_by: str


@dataclass(frozen=True, slots=True)
class EnvironmentFacts:
    """One environment as configured, plus what runs there now."""

    name: str
    position: int
    requires_go_from: str | None
    deploy_roles: frozenset[str]
    decide_roles: frozenset[str]
    locked: bool
    lock_reason: str | None
    frozen: bool
    freeze_reason: str | None
    separation_of_duties: bool
    current_version: semver.Version | None
    active_deployment: ActiveDeployment | None


@dataclass(frozen=True, slots=True)
class DecisionFacts:
    """One go / no-go given on a release in an environment."""

    environment: str
    decision: str  # "go" | "no-go"
    by: str
    at: datetime
    comment: str
    bugs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking."""

    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """What the user said when asking for a deploy."""

    rollback_reason: str | None = None
    freeze_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason a request is refused: a stable code and a sentence for people."""

    code: str
    sentence: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: allowed exactly when there are no refusals."""

    allowed: bool
    reasons: tuple[Refusal, ...]
    rollback: bool
    notes: tuple[str, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """The refusal codes, in order."""
        return tuple(r.code for r in self.reasons)

    @property
    def message(self) -> str:
        """All refusal sentences as one paragraph (empty when allowed)."""
        return " ".join(_sentence_end(r.sentence) for r in self.reasons)


DEPLOY_REFUSAL_ORDER = (
    "not-tagged",
    "not-allowed",
    "locked",
    "frozen",
    "busy",
    "needs-go",
    "go-not-independent",
    "go-giver-deploys",
    "rollback-needs-reason",
)

DECISION_REFUSAL_ORDER = (
    "bad-decision",
    "not-allowed",
    "not-deployed",
    "needs-comment",
    "bad-issue-pattern",
    "bad-issue-key",
    "not-independent",
)


def _sentence_end(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _role_list(roles: frozenset[str]) -> str:
    # Roles are listed in the enum's order (least to most powerful), admin last,
    # so the same configuration always yields the same sentence.
    known = [r.value for r in Role if r.value in roles and r is not Role.ADMIN]
    unknown = sorted(roles - {r.value for r in Role})
    names = [*known, *unknown]
    return f"{', '.join(names)} or {Role.ADMIN.value}"


def _may(actor: Actor, roles: frozenset[str]) -> bool:
    return actor.role is Role.ADMIN or actor.role.value in roles


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _shorten(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _clip(text: str, limit: int = 40) -> str:
    # Unlike _shorten, keeps whitespace: a stray space may be exactly what is wrong.
    return text if len(text) <= limit else text[: limit - 1] + "…"


def current_decision(decisions: Iterable[DecisionFacts], environment: str) -> DecisionFacts | None:
    """The decision that counts in one environment: the latest by time, ties to the later listed."""
    latest: DecisionFacts | None = None
    for decision in decisions:
        # ">=" rather than ">": on equal timestamps the later entry wins.
        if decision.environment == environment and (latest is None or decision.at >= latest.at):
            latest = decision
    return latest


def _no_go_detail(decision: DecisionFacts) -> str:
    if decision.bugs:
        return f"{_plural(len(decision.bugs), 'bug')} ({', '.join(decision.bugs)})"
    if decision.comment.strip():
        return f'"{_shorten(decision.comment)}"'
    return "no reason given"


def check_deploy(
    release: ReleaseFacts,
    env: EnvironmentFacts,
    *,
    decisions: Sequence[DecisionFacts],
    actor: Actor,
    request: DeployRequest,
    deployed_by: Iterable[str] = (),
) -> Verdict:
    """Decide whether ``actor`` may deploy ``release`` to ``env``, collecting every refusal.

    ``decisions`` are all decisions on *this* release. ``deployed_by`` names the people
    who deployed this release to the environment whose go ``env`` requires; with
    ``env.separation_of_duties`` the go ``env`` relies on must come from someone who
    neither cut the release nor deployed it there (this also catches goes recorded
    before the rule was switched on), and someone other than ``actor``.
    """
    version = str(release.version)
    reasons: list[Refusal] = []
    notes: list[str] = []
    rollback = False

    if not release.tagged:
        reasons.append(
            Refusal("not-tagged", f"{version} has no tag yet: wait for its tag job to finish")
        )

    if not _may(actor, env.deploy_roles):
        if env.deploy_roles - {Role.ADMIN.value}:
            sentence = (
                f"{actor.username} ({actor.role.value}) may not deploy to {env.name}: "
                f"it takes {_role_list(env.deploy_roles)}"
            )
        else:
            sentence = f"only an admin may deploy to {env.name}"
        reasons.append(Refusal("not-allowed", sentence))

    if env.locked:
        why = env.lock_reason.strip() if env.lock_reason and env.lock_reason.strip() else None
        reasons.append(
            Refusal(
                "locked",
                f"{env.name} is locked: {why}"
                if why
                else f"{env.name} is locked (no reason given)",
            )
        )

    if env.frozen:
        freeze = (
            f"{env.name} is frozen: {env.freeze_reason.strip()}"
            if env.freeze_reason and env.freeze_reason.strip()
            else f"{env.name} is frozen"
        )
        if release.kind != "hotfix":
            reasons.append(
                Refusal(
                    "frozen",
                    f"{freeze}; only a hotfix may go through, with a reason "
                    f"({version} is a {release.kind} release)",
                )
            )
        elif _blank(request.freeze_reason):
            reasons.append(
                Refusal(
                    "frozen",
                    f"{freeze}; give a reason to let hotfix {version} through the freeze",
                )
            )
        else:
            assert request.freeze_reason is not None  # narrowed by _blank above
            notes.append(f"freeze exception: {request.freeze_reason.strip()}")

    active = env.active_deployment
    if active is not None:
        reasons.append(
            Refusal(
                "busy",
                f"{env.name} is busy: {active.version} is {active.state} "
                f"(asked by {active.requested_by}); wait for it or cancel it",
            )
        )

    required = env.requires_go_from
    if required is not None:
        go = current_decision(decisions, required)
        needs = f"{env.name} needs a go from {required} for {version}"
        if go is None:
            reasons.append(Refusal("needs-go", f"{needs}; {required} has not decided yet"))
        elif go.decision != "go":
            reasons.append(
                Refusal(
                    "needs-go",
                    f"{needs}; {required} said {go.decision} on {go.at.date().isoformat()}: "
                    f"{_no_go_detail(go)}",
                )
            )
        elif env.separation_of_duties:
            conflicts = _conflicts(go.by, release.cut_by, deployed_by, version, required)
            if conflicts:
                reasons.append(
                    Refusal(
                        "go-not-independent",
                        f"{env.name} needs a go from someone who neither cut nor deployed "
                        f"{version}; {go.by} gave {required}'s go but {conflicts}: "
                        f"someone else must give it",
                    )
                )
            if go.by == actor.username:
                reasons.append(
                    Refusal(
                        "go-giver-deploys",
                        f"{actor.username} gave {required}'s go on {version}, so someone "
                        f"else must deploy it to {env.name}",
                    )
                )

    current = env.current_version
    if current is not None and release.version < current:
        if _blank(request.rollback_reason):
            reasons.append(
                Refusal(
                    "rollback-needs-reason",
                    f"{version} is older than {current}, which runs in {env.name}: "
                    f"deploying it is a rollback, so give a reason",
                )
            )
        else:
            assert request.rollback_reason is not None  # narrowed by _blank above
            rollback = True
            notes.append(
                f"rollback of {env.name} from {current} to {version}: "
                f"{request.rollback_reason.strip()}"
            )
    else:
        if current is not None and release.version == current:
            notes.append(f"redeploy: {version} already runs in {env.name}")
        if not _blank(request.rollback_reason):
            # Say so rather than refuse: the deploy is safe, only the label was wrong.
            notes.append(
                f"not a rollback: {version} is not older than "
                f"{current if current is not None else 'nothing'} in {env.name}; "
                f"the rollback reason is ignored"
            )

    # rollback is only reported for a deploy that may go ahead, so a caller can record
    # it as such without re-checking ``allowed``.
    return Verdict(
        allowed=not reasons,
        reasons=tuple(reasons),
        rollback=rollback and not reasons,
        notes=tuple(notes),
    )


def _conflicts(
    person: str, cutter: str | None, deployed_by: Iterable[str], version: str, where: str
) -> str:
    """Why ``person`` is not independent of the release ("" when they are)."""
    parts: list[str] = []
    if cutter is not None and person == cutter:
        parts.append(f"cut {version}")
    if person in set(deployed_by):
        parts.append(f"deployed it to {where}")
    return " and ".join(parts)


def check_decision(
    release: ReleaseFacts,
    env: EnvironmentFacts,
    *,
    actor: Actor,
    decision: str,
    comment: str,
    bugs: Sequence[str],
    issue_pattern: str,
    deployed_in_env: bool,
    deployed_by: Iterable[str],
    cut_by: str | None,
) -> Verdict:
    """Decide whether ``actor`` may record ``decision`` on ``release`` in ``env``; all refusals.

    ``deployed_in_env`` says whether ``release`` is what currently runs in ``env``;
    ``deployed_by`` names who deployed it there and ``cut_by`` who cut it (falling back
    to ``release.cut_by``), for separation of duties, which only restricts a go.
    """
    version = str(release.version)
    reasons: list[Refusal] = []

    if decision not in DECISIONS:
        reasons.append(Refusal("bad-decision", f"a decision is go or no-go, not {decision!r}"))

    if not _may(actor, env.decide_roles):
        if env.decide_roles - {Role.ADMIN.value}:
            sentence = (
                f"{actor.username} ({actor.role.value}) may not decide on releases in "
                f"{env.name}: it takes {_role_list(env.decide_roles)}"
            )
        else:
            sentence = f"only an admin may decide on releases in {env.name}"
        reasons.append(Refusal("not-allowed", sentence))

    if not deployed_in_env:
        runs = (
            f"{env.name} runs {env.current_version}, not {version}"
            if env.current_version is not None and env.current_version != release.version
            else f"{version} is not deployed in {env.name}"
        )
        reasons.append(
            Refusal(
                "not-deployed",
                f"{runs}: deploy {version} to {env.name} before deciding on it there",
            )
        )

    if decision == "no-go" and not comment.strip():
        reasons.append(Refusal("needs-comment", "a no-go needs a comment saying why"))

    if bugs:
        reasons.extend(_bug_key_refusals(bugs, issue_pattern))

    if decision == "go" and env.separation_of_duties:
        cutter = cut_by if cut_by is not None else release.cut_by
        conflicts = _conflicts(actor.username, cutter, deployed_by, version, env.name)
        if conflicts:
            reasons.append(
                Refusal(
                    "not-independent",
                    f"{env.name} separates duties: {actor.username} {conflicts}, "
                    f"so someone else must give its go (a no-go is still yours to give)",
                )
            )

    return Verdict(allowed=not reasons, reasons=tuple(reasons), rollback=False, notes=())


def _bug_key_refusals(bugs: Sequence[str], issue_pattern: str) -> list[Refusal]:
    """Refusals for bug keys that are not issue keys, or for a broken project pattern."""
    try:
        pattern = re.compile(issue_pattern)
    except re.error as exc:
        return [
            Refusal(
                "bad-issue-pattern",
                f"the project's issue-key pattern {issue_pattern!r} is not a valid regular "
                f"expression ({exc}): an admin must fix it in the project configuration",
            )
        ]
    out: list[Refusal] = []
    for key in bugs:
        if len(key) > MAX_ISSUE_KEY_LENGTH or pattern.fullmatch(key) is None:
            out.append(
                Refusal(
                    "bad-issue-key",
                    f"{_clip(key)!r} is not an issue key: keys must match {issue_pattern!r}",
                )
            )
    return out


def qa_state(
    decisions: Iterable[DecisionFacts], first_env: str
) -> Literal["go", "no-go", "pending"]:
    """The QA state on a kanban card: the current decision in the first environment, or pending."""
    latest = current_decision(decisions, first_env)
    if latest is None:
        return "pending"
    return "go" if latest.decision == "go" else "no-go"


def stage_of(release_env_states: Iterable[tuple[str, bool]]) -> str:
    """The furthest stage a release reached, from (environment, ever deployed) pairs in order."""
    stage = CUT_STAGE
    for name, deployed in release_env_states:
        if deployed:
            stage = name
    return stage


def next_environment(
    envs: Iterable[EnvironmentFacts], current: str | None
) -> EnvironmentFacts | None:
    """The environment after ``current`` in promotion order (first for None, None after last)."""
    ordered = sorted(envs, key=lambda e: e.position)
    if current is None:
        return ordered[0] if ordered else None
    names = [e.name for e in ordered]
    if current not in names:
        raise ValueError(f"unknown environment {current!r}")
    index = names.index(current)
    return ordered[index + 1] if index + 1 < len(ordered) else None
