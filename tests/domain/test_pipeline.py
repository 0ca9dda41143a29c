"""Tests for the pipeline gates: which deploys and decisions are allowed, and why not."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from relapp.domain.pipeline import (
    DECISION_REFUSAL_ORDER,
    DEPLOY_REFUSAL_ORDER,
    ActiveDeployment,
    Actor,
    DecisionFacts,
    DeployRequest,
    EnvironmentFacts,
    ReleaseFacts,
    Role,
    Verdict,
    check_decision,
    check_deploy,
    current_decision,
    next_environment,
    qa_state,
    stage_of,
)

V = semver.Version.parse
T0 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
PATTERN = r"[A-Z][A-Z0-9]+-\d+"


def release(version: str = "1.5.0", **kw: Any) -> ReleaseFacts:
    base: dict[str, Any] = {
        "version": V(version),
        "kind": "minor",
        "tagged": True,
        "sha": "a" * 40,
        "cut_by": "erin",
    }
    base.update(kw)
    return ReleaseFacts(**base)


def env(name: str = "beta", **kw: Any) -> EnvironmentFacts:
    base: dict[str, Any] = {
        "name": name,
        "position": {"qa": 0, "beta": 1, "prod": 2}.get(name, 9),
        "requires_go_from": "qa",
        "deploy_roles": frozenset({"engineer", "release"}),
        "decide_roles": frozenset({"qa"}),
        "locked": False,
        "lock_reason": None,
        "frozen": False,
        "freeze_reason": None,
        "separation_of_duties": False,
        "current_version": V("1.4.0"),
        "active_deployment": None,
    }
    base.update(kw)
    return EnvironmentFacts(**base)


def decided(
    environment: str = "qa",
    decision: str = "go",
    by: str = "quinn",
    at: datetime = T0,
    comment: str = "",
    bugs: tuple[str, ...] = (),
) -> DecisionFacts:
    return DecisionFacts(environment, decision, by, at, comment, bugs)


ENGINEER = Actor("erin", Role.ENGINEER)
RELMAN = Actor("rita", Role.RELEASE)
QA = Actor("quinn", Role.QA)
ADMIN = Actor("ada", Role.ADMIN)
GO = (decided(),)
PLAIN = DeployRequest()


def deploy(
    rel: ReleaseFacts | None = None,
    target: EnvironmentFacts | None = None,
    decisions: tuple[DecisionFacts, ...] = GO,
    actor: Actor = RELMAN,
    request: DeployRequest = PLAIN,
    deployed_by: tuple[str, ...] = (),
) -> Verdict:
    return check_deploy(
        rel or release(),
        target or env(),
        decisions=decisions,
        actor=actor,
        request=request,
        deployed_by=deployed_by,
    )


def decide(
    decision: str = "go",
    *,
    target: EnvironmentFacts | None = None,
    actor: Actor = QA,
    comment: str = "looks good",
    bugs: tuple[str, ...] = (),
    pattern: str = PATTERN,
    deployed_in_env: bool = True,
    deployed_by: tuple[str, ...] = ("rita",),
    cut_by: str | None = "erin",
) -> Verdict:
    return check_decision(
        release(),
        target or env("qa", requires_go_from=None, current_version=V("1.5.0")),
        actor=actor,
        decision=decision,
        comment=comment,
        bugs=bugs,
        issue_pattern=pattern,
        deployed_in_env=deployed_in_env,
        deployed_by=deployed_by,
        cut_by=cut_by,
    )


# --- check_deploy --------------------------------------------------------------------


def test_clean_deploy_is_allowed_without_notes() -> None:
    verdict = deploy()
    assert verdict == Verdict(allowed=True, reasons=(), rollback=False, notes=())


@pytest.mark.parametrize(
    ("case", "kwargs", "code", "sentence"),
    [
        (
            "untagged",
            {"rel": release(tagged=False)},
            "not-tagged",
            "1.5.0 has no tag yet: wait for its tag job to finish",
        ),
        (
            "role",
            {"actor": QA},
            "not-allowed",
            "quinn (qa) may not deploy to beta: it takes engineer, release or admin",
        ),
        (
            "admin-only",
            {"target": env(deploy_roles=frozenset())},
            "not-allowed",
            "only an admin may deploy to beta",
        ),
        (
            "locked",
            {"target": env(locked=True, lock_reason="DB migration in progress")},
            "locked",
            "beta is locked: DB migration in progress",
        ),
        (
            "locked-no-reason",
            {"target": env(locked=True)},
            "locked",
            "beta is locked (no reason given)",
        ),
        (
            "frozen-minor",
            {
                "target": env(frozen=True, freeze_reason="Black Friday"),
                "request": DeployRequest(freeze_reason="please"),
            },
            "frozen",
            (
                "beta is frozen: Black Friday; only a hotfix may go through, with a reason "
                "(1.5.0 is a minor release)"
            ),
        ),
        (
            "frozen-hotfix-no-reason",
            {
                "rel": release("1.5.1", kind="hotfix"),
                "target": env(frozen=True, freeze_reason="Black Friday"),
                "request": DeployRequest(freeze_reason="   "),
            },
            "frozen",
            "beta is frozen: Black Friday; give a reason to let hotfix 1.5.1 through the freeze",
        ),
        (
            "running",
            {"target": env(active_deployment=ActiveDeployment(V("1.4.0"), "running", "alice"))},
            "busy",
            "beta is busy: 1.4.0 is running (asked by alice); wait for it or cancel it",
        ),
        (
            "queued",
            {"target": env(active_deployment=ActiveDeployment(V("1.5.0"), "queued", "bob"))},
            "busy",
            "beta is busy: 1.5.0 is queued (asked by bob); wait for it or cancel it",
        ),
        (
            "no-decision",
            {"decisions": ()},
            "needs-go",
            "beta needs a go from qa for 1.5.0; qa has not decided yet",
        ),
        (
            "decision-elsewhere-only",
            {"decisions": (decided("beta"),)},
            "needs-go",
            "beta needs a go from qa for 1.5.0; qa has not decided yet",
        ),
        (
            "no-go-with-bugs",
            {"decisions": (decided(decision="no-go", comment="crash", bugs=("ABC-1", "ABC-2")),)},
            "needs-go",
            "beta needs a go from qa for 1.5.0; qa said no-go on 2026-11-20: 2 bugs (ABC-1, ABC-2)",
        ),
        (
            "no-go-one-bug",
            {"decisions": (decided(decision="no-go", comment="x", bugs=("ABC-9",)),)},
            "needs-go",
            "beta needs a go from qa for 1.5.0; qa said no-go on 2026-11-20: 1 bug (ABC-9)",
        ),
        (
            "no-go-comment-only",
            {"decisions": (decided(decision="no-go", comment="login\n is broken"),)},
            "needs-go",
            'beta needs a go from qa for 1.5.0; qa said no-go on 2026-11-20: "login is broken"',
        ),
        (
            "older-without-reason",
            {"rel": release("1.3.0")},
            "rollback-needs-reason",
            (
                "1.3.0 is older than 1.4.0, which runs in beta: deploying it is a rollback, "
                "so give a reason"
            ),
        ),
        (
            "older-blank-reason",
            {"rel": release("1.3.0"), "request": DeployRequest(rollback_reason=" \t")},
            "rollback-needs-reason",
            (
                "1.3.0 is older than 1.4.0, which runs in beta: deploying it is a rollback, "
                "so give a reason"
            ),
        ),
        (
            "self-approved-go",
            {
                "target": env(separation_of_duties=True),
                "decisions": (decided(by="erin"),),
            },
            "go-not-independent",
            (
                "beta needs a go from someone who neither cut nor deployed 1.5.0; erin gave "
                "qa's go but cut 1.5.0: someone else must give it"
            ),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and len(v) < 30 else None,
)
def test_each_deploy_refusal_alone(
    case: str, kwargs: dict[str, Any], code: str, sentence: str
) -> None:
    verdict = deploy(**kwargs)
    assert not verdict.allowed, case
    assert verdict.codes == (code,)
    assert verdict.reasons[0].sentence == sentence
    assert not verdict.rollback


def test_all_deploy_refusals_come_in_documented_order() -> None:
    verdict = deploy(
        rel=release("1.3.0", tagged=False),
        target=env(
            locked=True,
            lock_reason="incident",
            frozen=True,
            separation_of_duties=True,
            active_deployment=ActiveDeployment(V("1.4.1"), "running", "alice"),
        ),
        decisions=(),
        actor=Actor("vic", Role.VIEWER),
    )
    assert verdict.codes == (
        "not-tagged",
        "not-allowed",
        "locked",
        "frozen",
        "busy",
        "needs-go",
        "rollback-needs-reason",
    )
    assert verdict.message.startswith("1.3.0 has no tag yet: wait for its tag job to finish. vic")
    assert list(verdict.codes) == sorted(verdict.codes, key=DEPLOY_REFUSAL_ORDER.index)


def test_a_later_go_replaces_a_no_go() -> None:
    history = (
        decided(decision="no-go", at=T0, comment="broken", bugs=("ABC-1",)),
        decided(decision="go", at=T0 + timedelta(days=1)),
    )
    assert deploy(decisions=history).allowed
    # Order in the list does not matter, time does.
    assert deploy(decisions=history[::-1]).allowed


def test_a_later_no_go_withdraws_a_go() -> None:
    history = (
        decided(decision="go", at=T0 - timedelta(days=2)),
        decided(decision="no-go", at=T0, comment="regression", bugs=("ABC-7",)),
    )
    verdict = deploy(decisions=history)
    assert verdict.codes == ("needs-go",)
    assert "qa said no-go on 2026-11-20: 1 bug (ABC-7)" in verdict.reasons[0].sentence


def test_first_environment_needs_no_go() -> None:
    verdict = deploy(target=env("qa", requires_go_from=None), decisions=())
    assert verdict.allowed


def test_prod_needs_betas_go_not_qas() -> None:
    prod = env("prod", requires_go_from="beta")
    assert deploy(target=prod, decisions=(decided("qa"),)).codes == ("needs-go",)
    assert deploy(target=prod, decisions=(decided("qa"), decided("beta"))).allowed


@pytest.mark.parametrize("reason", ["1.4.0 corrupts sessions", "  spaced out  "])
def test_rollback_with_reason_is_allowed_and_flagged(reason: str) -> None:
    verdict = deploy(
        rel=release("1.3.0"),
        request=DeployRequest(rollback_reason=reason),
    )
    assert verdict.allowed
    assert verdict.rollback
    assert verdict.notes == (f"rollback of beta from 1.4.0 to 1.3.0: {reason.strip()}",)


def test_rollback_is_by_semver_not_by_text() -> None:
    # "1.10.0" < "1.9.0" as strings, but 1.10.0 is newer: no rollback needed.
    verdict = deploy(rel=release("1.10.0"), target=env(current_version=V("1.9.0")))
    assert verdict.allowed
    assert not verdict.rollback
    older = deploy(rel=release("1.9.0"), target=env(current_version=V("1.10.0")))
    assert older.codes == ("rollback-needs-reason",)


def test_prerelease_is_older_than_its_release() -> None:
    verdict = deploy(rel=release("1.4.0-rc.1"), target=env(current_version=V("1.4.0")))
    assert verdict.codes == ("rollback-needs-reason",)


def test_rollback_reason_on_a_forward_deploy_is_noted_not_refused() -> None:
    verdict = deploy(request=DeployRequest(rollback_reason="oops"))
    assert verdict.allowed
    assert not verdict.rollback
    assert verdict.notes == (
        "not a rollback: 1.5.0 is not older than 1.4.0 in beta; the rollback reason is ignored",
    )


def test_rollback_still_needs_the_go() -> None:
    verdict = deploy(
        rel=release("1.3.0"), decisions=(), request=DeployRequest(rollback_reason="bad")
    )
    assert verdict.codes == ("needs-go",)
    assert not verdict.rollback
    assert not verdict.allowed


def test_redeploy_of_the_same_version_is_allowed_with_a_note() -> None:
    verdict = deploy(target=env(current_version=V("1.5.0")))
    assert verdict.allowed
    assert not verdict.rollback
    assert verdict.notes == ("redeploy: 1.5.0 already runs in beta",)


def test_first_deploy_to_an_empty_environment() -> None:
    verdict = deploy(target=env(current_version=None))
    assert verdict.allowed
    assert verdict.notes == ()


def test_freeze_lets_a_hotfix_with_reason_through_and_says_so() -> None:
    verdict = deploy(
        rel=release("1.5.1", kind="hotfix"),
        target=env(frozen=True, freeze_reason="Black Friday"),
        request=DeployRequest(freeze_reason="payments outage INC-42"),
    )
    assert verdict.allowed
    assert verdict.notes == ("freeze exception: payments outage INC-42",)


def test_freeze_refuses_a_minor_even_with_reason() -> None:
    verdict = deploy(
        target=env(frozen=True, freeze_reason="Black Friday"),
        request=DeployRequest(freeze_reason="we really want it"),
    )
    assert verdict.codes == ("frozen",)
    assert verdict.notes == ()


def test_freeze_exception_does_not_lift_a_lock() -> None:
    verdict = deploy(
        rel=release("1.5.1", kind="hotfix"),
        target=env(frozen=True, locked=True, lock_reason="incident"),
        request=DeployRequest(freeze_reason="fix"),
    )
    assert verdict.codes == ("locked",)


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [
        (Actor("vic", Role.VIEWER), False),
        (QA, False),
        (ENGINEER, False),
        (RELMAN, True),
        (ADMIN, True),
    ],
)
def test_deploy_roles_and_admin_override(actor: Actor, allowed: bool) -> None:
    prod = env("prod", requires_go_from="beta", deploy_roles=frozenset({"release"}))
    verdict = deploy(target=prod, decisions=(decided("beta"),), actor=actor)
    assert verdict.allowed is allowed
    assert verdict.codes == (() if allowed else ("not-allowed",))


def test_admin_may_deploy_where_no_role_is_listed() -> None:
    assert deploy(target=env(deploy_roles=frozenset()), actor=ADMIN).allowed


def test_admin_does_not_skip_the_other_gates() -> None:
    verdict = deploy(actor=ADMIN, decisions=(), rel=release(tagged=False))
    assert verdict.codes == ("not-tagged", "needs-go")


@pytest.mark.parametrize(
    ("go_by", "deployed_by", "sod", "expected"),
    [
        ("quinn", ("rita",), True, ()),
        ("erin", (), True, ("go-not-independent",)),  # erin cut the release
        # rita deployed it to qa, and she is the one deploying now
        ("rita", ("rita",), True, ("go-not-independent", "go-giver-deploys")),
        ("erin", ("erin",), False, ()),  # rule off: anything goes
    ],
)
def test_deploy_checks_the_go_it_relies_on_is_independent(
    go_by: str, deployed_by: tuple[str, ...], sod: bool, expected: tuple[str, ...]
) -> None:
    verdict = deploy(
        target=env(separation_of_duties=sod),
        decisions=(decided(by=go_by),),
        deployed_by=deployed_by,
    )
    assert verdict.codes == expected


def test_self_approved_go_names_both_conflicts() -> None:
    verdict = deploy(
        target=env(separation_of_duties=True),
        decisions=(decided(by="erin"),),
        deployed_by=("erin",),
    )
    assert "erin gave qa's go but cut 1.5.0 and deployed it to qa" in verdict.message


@pytest.mark.parametrize(
    ("actor", "go_by", "sod", "expected"),
    [
        (RELMAN, "rita", True, ("go-giver-deploys",)),  # the finding: approve, then ship
        (ADMIN, "ada", True, ("go-giver-deploys",)),  # an admin is no exception
        (RELMAN, "quinn", True, ()),  # someone else gave the go
        (RELMAN, "rita", False, ()),  # rule off
    ],
)
def test_nobody_deploys_where_they_gave_the_required_go(
    actor: Actor, go_by: str, sod: bool, expected: tuple[str, ...]
) -> None:
    prod = env("prod", requires_go_from="beta", deploy_roles=frozenset({"release"}),
               separation_of_duties=sod)
    verdict = deploy(target=prod, decisions=(decided("beta", by=go_by),), actor=actor)
    assert verdict.codes == expected
    if expected:
        assert verdict.reasons[0].sentence == (
            f"{actor.username} gave beta's go on 1.5.0, so someone else must deploy it to prod"
        )


def test_only_the_go_that_counts_binds_the_deployer() -> None:
    # rita's earlier go was replaced by quinn's: the go prod relies on is not hers.
    history = (decided(by="rita", at=T0), decided(by="quinn", at=T0 + timedelta(hours=1)))
    assert deploy(target=env(separation_of_duties=True), decisions=history).allowed
    # ... and the other way round, the later go is hers.
    history = (decided(by="quinn", at=T0), decided(by="rita", at=T0 + timedelta(hours=1)))
    verdict = deploy(target=env(separation_of_duties=True), decisions=history)
    assert verdict.codes == ("go-giver-deploys",)


def test_a_cutter_who_approved_and_deploys_gets_both_refusals_in_order() -> None:
    verdict = deploy(
        rel=release("1.3.0", cut_by="ada"),
        target=env(separation_of_duties=True),
        decisions=(decided(by="ada"),),
        actor=ADMIN,
        deployed_by=("ada",),
    )
    assert verdict.codes == ("go-not-independent", "go-giver-deploys", "rollback-needs-reason")
    assert list(verdict.codes) == sorted(verdict.codes, key=DEPLOY_REFUSAL_ORDER.index)
    assert "ada gave qa's go but cut 1.3.0 and deployed it to qa" in verdict.message
    assert "ada gave qa's go on 1.3.0, so someone else must deploy it to beta." in verdict.message


@given(
    people=st.lists(st.sampled_from(["ada", "erin", "quinn", "rita"]), min_size=1, max_size=4),
    actor=st.sampled_from([ADMIN, RELMAN, ENGINEER, Actor("rita", Role.ADMIN)]),
)
def test_with_separation_of_duties_the_go_giver_never_deploys(
    people: list[str], actor: Actor
) -> None:
    """Whoever gave the go that counts, whatever their role, never deploys on it."""
    history = tuple(decided(by=p, at=T0 + timedelta(minutes=i)) for i, p in enumerate(people))
    verdict = deploy(target=env(separation_of_duties=True), decisions=history, actor=actor)
    assert ("go-giver-deploys" in verdict.codes) == (people[-1] == actor.username)


# --- current_decision / qa_state ----------------------------------------------------


def test_current_decision_is_latest_by_time_and_per_environment() -> None:
    a = decided(at=T0, by="a")
    b = decided(at=T0 + timedelta(hours=1), by="b", decision="no-go", comment="x")
    c = decided("beta", at=T0 + timedelta(days=3), by="c")
    assert current_decision([b, a, c], "qa") == b
    assert current_decision([a, b, c], "beta") == c
    assert current_decision([a, b], "prod") is None
    assert current_decision([], "qa") is None


def test_current_decision_tie_goes_to_the_later_listed() -> None:
    first = decided(by="first")
    second = decided(by="second", decision="no-go", comment="x")
    assert current_decision([first, second], "qa") == second
    assert current_decision([second, first], "qa") == first


@pytest.mark.parametrize(
    ("decisions", "state"),
    [
        ((), "pending"),
        ((decided("beta"),), "pending"),
        ((decided(),), "go"),
        ((decided(), decided(decision="no-go", at=T0 + timedelta(1), comment="x")), "no-go"),
        ((decided(decision="no-go", comment="x"), decided(at=T0 + timedelta(1))), "go"),
    ],
)
def test_qa_state(decisions: tuple[DecisionFacts, ...], state: str) -> None:
    assert qa_state(decisions, "qa") == state


# --- check_decision -----------------------------------------------------------------


def test_clean_go_and_no_go_are_allowed() -> None:
    assert decide("go").allowed
    assert decide("no-go", comment="login broken", bugs=("ABC-1", "ABC-22")).allowed
    assert decide("go", comment="").allowed  # a go needs no comment


@pytest.mark.parametrize(
    ("kwargs", "code", "sentence"),
    [
        ({"decision": "maybe"}, "bad-decision", "a decision is go or no-go, not 'maybe'"),
        ({"decision": "GO"}, "bad-decision", "a decision is go or no-go, not 'GO'"),
        (
            {"decision": "no-go", "comment": "  \n"},
            "needs-comment",
            "a no-go needs a comment saying why",
        ),
        (
            {"actor": Actor("eve", Role.ENGINEER)},
            "not-allowed",
            "eve (engineer) may not decide on releases in qa: it takes qa or admin",
        ),
        (
            {"bugs": ("ABC-1", "abc-2")},
            "bad-issue-key",
            "'abc-2' is not an issue key: keys must match '[A-Z][A-Z0-9]+-\\\\d+'",
        ),
        (
            {"bugs": ("ABC-1 ",)},  # fullmatch, not search: trailing junk is refused
            "bad-issue-key",
            "'ABC-1 ' is not an issue key: keys must match '[A-Z][A-Z0-9]+-\\\\d+'",
        ),
        (
            {"deployed_in_env": False},
            "not-deployed",
            "qa runs 1.4.0, not 1.5.0: deploy 1.5.0 to qa before deciding on it there",
        ),
        (
            {"cut_by": "quinn"},
            "not-independent",
            (
                "qa separates duties: quinn cut 1.5.0, so someone else must give its go "
                "(a no-go is still yours to give)"
            ),
        ),
        (
            {"deployed_by": ("rita", "quinn")},
            "not-independent",
            (
                "qa separates duties: quinn deployed it to qa, so someone else must give its go "
                "(a no-go is still yours to give)"
            ),
        ),
    ],
)
def test_each_decision_refusal_alone(kwargs: dict[str, Any], code: str, sentence: str) -> None:
    kwargs.setdefault(
        "target",
        env(
            "qa",
            requires_go_from=None,
            separation_of_duties=True,
            current_version=V("1.4.0") if kwargs.get("deployed_in_env") is False else V("1.5.0"),
        ),
    )
    verdict = decide(**kwargs)
    assert not verdict.allowed
    assert verdict.codes == (code,)
    assert verdict.reasons[0].sentence == sentence


def test_not_deployed_in_an_empty_environment() -> None:
    verdict = decide(
        deployed_in_env=False,
        target=env("qa", requires_go_from=None, current_version=None),
    )
    assert verdict.message == (
        "1.5.0 is not deployed in qa: deploy 1.5.0 to qa before deciding on it there."
    )


def test_every_bad_bug_key_is_named() -> None:
    verdict = decide("no-go", comment="x", bugs=("abc-1", "ABC-2", "JIRA", ""))
    assert verdict.codes == ("bad-issue-key",) * 3
    assert [r.sentence.split(" ")[0] for r in verdict.reasons] == ["'abc-1'", "'JIRA'", "''"]


@pytest.mark.parametrize("pattern", ["[A-Z+-\\d+", "(ABC", "*"])
def test_broken_issue_pattern_is_a_refusal_not_a_crash(pattern: str) -> None:
    verdict = decide("no-go", comment="x", bugs=("ABC-1",), pattern=pattern)
    assert verdict.codes == ("bad-issue-pattern",)
    sentence = verdict.reasons[0].sentence
    assert sentence.startswith(f"the project's issue-key pattern {pattern!r} is not a valid")
    assert "fix it in the project configuration" in sentence


def test_broken_issue_pattern_does_not_matter_without_bugs() -> None:
    assert decide("go", pattern="(").allowed


def test_oversized_bug_key_is_refused_before_matching() -> None:
    key = "ABC-" + "1" * 200
    verdict = decide("no-go", comment="x", bugs=(key,), pattern=r"ABC-\d+")
    assert verdict.codes == ("bad-issue-key",)
    assert "…" in verdict.reasons[0].sentence


def test_all_decision_refusals_come_in_documented_order() -> None:
    verdict = decide(
        "no-go",
        actor=Actor("vic", Role.VIEWER),
        comment="",
        bugs=("nope", "ABC-1", "bad"),
        deployed_in_env=False,
    )
    assert verdict.codes == (
        "not-allowed",
        "not-deployed",
        "needs-comment",
        "bad-issue-key",
        "bad-issue-key",
    )
    assert list(verdict.codes) == sorted(verdict.codes, key=DECISION_REFUSAL_ORDER.index)
    bad = decide("maybe", actor=Actor("vic", Role.VIEWER), bugs=("x",), pattern="(")
    assert bad.codes == ("bad-decision", "not-allowed", "bad-issue-pattern")


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [
        (Actor("vic", Role.VIEWER), False),
        (Actor("eve", Role.ENGINEER), False),
        (Actor("rita", Role.RELEASE), True),
        (Actor("ada", Role.ADMIN), True),
    ],
)
def test_decide_roles_and_admin_override(actor: Actor, allowed: bool) -> None:
    target = env("beta", decide_roles=frozenset({"qa", "release"}), current_version=V("1.5.0"))
    verdict = decide(actor=actor, target=target, deployed_by=("someone",))
    assert verdict.allowed is allowed


@pytest.mark.parametrize(
    ("actor", "decision", "sod", "expected"),
    [
        (QA, "go", True, ()),  # quinn neither cut nor deployed
        (ENGINEER, "go", True, ("not-independent",)),  # erin cut it
        (Actor("rita", Role.QA), "go", True, ("not-independent",)),  # rita deployed it
        (Actor("rita", Role.QA), "no-go", True, ()),  # stopping needs no second pair of eyes
        (Actor("rita", Role.QA), "go", False, ()),  # rule off
        (Actor("erin", Role.ADMIN), "go", True, ("not-independent",)),  # admins included
    ],
)
def test_separation_of_duties(
    actor: Actor, decision: str, sod: bool, expected: tuple[str, ...]
) -> None:
    target = env(
        "qa",
        requires_go_from=None,
        decide_roles=frozenset({"qa", "engineer"}),
        separation_of_duties=sod,
        current_version=V("1.5.0"),
    )
    verdict = decide(decision, actor=actor, target=target, comment="why")
    assert verdict.codes == expected


def test_separation_of_duties_falls_back_to_the_releases_cutter() -> None:
    target = env("qa", requires_go_from=None, separation_of_duties=True)
    verdict = decide(actor=Actor("erin", Role.ADMIN), target=target, cut_by=None, deployed_by=())
    assert verdict.codes == ("not-independent",)


@given(
    actor=st.sampled_from(["ada", "erin", "quinn", "rita"]),
    role=st.sampled_from(list(Role)),
    cutter=st.sampled_from(["ada", "erin", "quinn", "rita", None]),
    deployers=st.sets(st.sampled_from(["ada", "erin", "quinn", "rita"]), max_size=3),
)
def test_with_separation_of_duties_no_go_comes_from_the_cutter_or_a_deployer(
    actor: str, role: Role, cutter: str | None, deployers: set[str]
) -> None:
    """A go is refused exactly when its giver cut the release or deployed it there, whatever
    their role (admins included); without the rule, neither matters."""
    target = env("qa", requires_go_from=None, decide_roles=frozenset(r.value for r in Role),
                 separation_of_duties=True, current_version=V("1.5.0"))
    verdict = check_decision(
        release(cut_by=cutter), target, actor=Actor(actor, role), decision="go", comment="",
        bugs=(), issue_pattern=PATTERN, deployed_in_env=True, deployed_by=tuple(deployers),
        cut_by=cutter,
    )
    assert ("not-independent" in verdict.codes) == (actor == cutter or actor in deployers)
    off = check_decision(
        release(cut_by=cutter), dataclasses.replace(target, separation_of_duties=False),
        actor=Actor(actor, role), decision="go", comment="", bugs=(), issue_pattern=PATTERN,
        deployed_in_env=True, deployed_by=tuple(deployers), cut_by=cutter,
    )
    assert off.allowed


# --- stage_of / next_environment ----------------------------------------------------


@pytest.mark.parametrize(
    ("states", "stage"),
    [
        ([], "cut"),
        ([("qa", False), ("beta", False), ("prod", False)], "cut"),
        ([("qa", True), ("beta", False), ("prod", False)], "qa"),
        ([("qa", True), ("beta", True), ("prod", False)], "beta"),
        ([("qa", True), ("beta", True), ("prod", True)], "prod"),
        # A skipped stage (a direct prod deploy by an admin) still counts as furthest.
        ([("qa", True), ("beta", False), ("prod", True)], "prod"),
    ],
)
def test_stage_of(states: list[tuple[str, bool]], stage: str) -> None:
    assert stage_of(states) == stage


def test_next_environment_follows_position_not_list_order() -> None:
    envs = [env("prod"), env("qa"), env("beta")]
    assert next_environment(envs, None) == env("qa")
    assert next_environment(envs, "qa") == env("beta")
    assert next_environment(envs, "beta") == env("prod")
    assert next_environment(envs, "prod") is None
    assert next_environment([], None) is None
    with pytest.raises(ValueError, match="unknown environment 'staging'"):
        next_environment(envs, "staging")


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        release().tagged = False  # type: ignore[misc]
    assert Role("release") is Role.RELEASE
    assert Role.ADMIN.value == "admin"


# --- properties ---------------------------------------------------------------------

versions = st.builds(
    semver.Version,
    major=st.integers(0, 3),
    minor=st.integers(0, 3),
    patch=st.integers(0, 2),
)
names = st.sampled_from(["alice", "bob", "erin", "quinn", "rita"])
reasons = st.one_of(st.none(), st.sampled_from(["", "  ", "because"]))
role_sets = st.frozensets(st.sampled_from([r.value for r in Role]))


@st.composite
def deploy_cases(draw: st.DrawFn) -> dict[str, Any]:
    rel = ReleaseFacts(
        version=draw(versions),
        kind=draw(st.sampled_from(["major", "minor", "hotfix"])),
        tagged=draw(st.booleans()),
        sha=None,
        cut_by=draw(st.one_of(st.none(), names)),
    )
    target = EnvironmentFacts(
        name="beta",
        position=1,
        requires_go_from=draw(st.sampled_from([None, "qa"])),
        deploy_roles=draw(role_sets),
        decide_roles=frozenset(),
        locked=draw(st.booleans()),
        lock_reason=draw(reasons),
        frozen=draw(st.booleans()),
        freeze_reason=draw(reasons),
        separation_of_duties=draw(st.booleans()),
        current_version=draw(st.one_of(st.none(), versions)),
        active_deployment=draw(
            st.one_of(
                st.none(),
                st.builds(
                    ActiveDeployment, versions, st.sampled_from(["queued", "running"]), names
                ),
            )
        ),
    )
    decisions = draw(
        st.lists(
            st.builds(
                DecisionFacts,
                environment=st.sampled_from(["qa", "beta"]),
                decision=st.sampled_from(["go", "no-go"]),
                by=names,
                at=st.datetimes(datetime(2026, 1, 1), datetime(2026, 1, 3)),
                comment=st.sampled_from(["", "why"]),
                bugs=st.lists(st.sampled_from(["ABC-1", "ABC-2"]), max_size=2).map(tuple),
            ),
            max_size=4,
        )
    )
    return {
        "rel": rel,
        "target": target,
        "decisions": tuple(decisions),
        "actor": Actor(draw(names), draw(st.sampled_from(list(Role)))),
        "request": DeployRequest(rollback_reason=draw(reasons), freeze_reason=draw(reasons)),
        "deployed_by": tuple(draw(st.lists(names, max_size=2))),
    }


@given(deploy_cases())
def test_deploy_verdict_properties(case: dict[str, Any]) -> None:
    verdict = deploy(**case)
    rel: ReleaseFacts = case["rel"]
    target: EnvironmentFacts = case["target"]
    assert verdict.allowed is (verdict.reasons == ())
    assert list(verdict.codes) == sorted(verdict.codes, key=DEPLOY_REFUSAL_ORDER.index)
    assert len(set(verdict.codes)) == len(verdict.codes)
    if verdict.allowed:
        assert rel.tagged
        assert not target.locked
        assert target.active_deployment is None
        if target.requires_go_from is not None:
            go = current_decision(case["decisions"], target.requires_go_from)
            assert go is not None
            assert go.decision == "go"
        if target.frozen:
            assert rel.kind == "hotfix"
            assert any(n.startswith("freeze exception: ") for n in verdict.notes)
        older = target.current_version is not None and rel.version < target.current_version
        assert verdict.rollback is older
    else:
        assert not verdict.rollback
