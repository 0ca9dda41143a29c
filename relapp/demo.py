"""The demo: a generated repository with months of history by three teams, a few hand-made legacy
tags, a bare origin beside it, a configuration file, and demo users."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from . import gitops

TEAMS = {
    "payments": ("services/payments/", "PAY", ("Ana Silva", "ana@example.com")),
    "search": ("services/search/", "SRCH", ("Bo Chen", "bo@example.com")),
    "platform": ("platform/", "PLAT", ("Cy Okafor", "cy@example.com")),
}
DEMO_USERS = (("admin", "admin"), ("release", "release"), ("engineer", "engineer"),
              ("qa", "qa"), ("viewer", "viewer"))
DEMO_PASSWORD = "demo"
START = 1_767_225_600  # 2026-01-01 00:00 UTC
# Legacy tags in mixed styles, as people made them by hand, at these commit numbers.
LEGACY_TAGS = ((45, "v0.9", True), (100, "release-1.0.0", True), (160, "1.1.0", False),
               (200, "backup-before-rewrite", False), (230, "rel_1_2_0", True))
COMMITS = 300

SUBJECTS = {
    "feat": ("add {thing}", "support {thing}", "show {thing} on the overview"),
    "fix": ("handle empty {thing}", "stop crashing on {thing}", "correct rounding in {thing}"),
    "perf": ("cache {thing}",),
    "refactor": ("split {thing} into modules",),
    "docs": ("document {thing}",),
    "test": ("cover {thing}",),
    "chore": ("bump dependencies",),
}
THINGS = ("invoices", "refunds", "currency codes", "query parser", "facets", "synonyms",
          "health checks", "config loader", "retry policy", "audit trail", "pagination", "exports")
FREE_FORM = ("Update README", "wip", "Merge branch 'hotfix' into main", "fix typo", "More logging")


def _data(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"data %d\n" % len(raw) + raw + b"\n"


def history_stream(seed: int = 7) -> bytes:
    """A git fast-import stream: COMMITS commits on main over five months, legacy tags, a fix branch."""
    rng = random.Random(seed)
    out: list[bytes] = []
    files: dict[str, int] = {}
    ts = START
    pr = 100
    tags = {n: (name, annotated) for n, name, annotated in LEGACY_TAGS}
    for n in range(1, COMMITS + 1):
        team = rng.choice(list(TEAMS))
        prefix, project_key, (author, email) = TEAMS[team]
        ts += rng.randint(3 * 3600, 14 * 3600)
        if rng.random() < 0.08:
            message = rng.choice(FREE_FORM)
        else:
            kind = rng.choices(list(SUBJECTS), weights=(30, 30, 4, 6, 8, 8, 6))[0]
            subject = rng.choice(SUBJECTS[kind]).format(thing=rng.choice(THINGS))
            scope = team if rng.random() < 0.7 else None
            head = f"{kind}({scope}): {subject}" if scope else f"{kind}: {subject}"
            pr += 1
            message = f"{head} (#{pr})"
            if kind in ("feat", "fix") and rng.random() < 0.6:
                message += f"\n\nRefs {project_key}-{rng.randint(1, 400)}"
        path = f"{prefix}{rng.choice(('core', 'api', 'util', 'model'))}.txt"
        files[path] = files.get(path, 0) + 1
        out.append(b"commit refs/heads/main\n")
        out.append(b"mark :%d\n" % n)
        out.append(f"author {author} <{email}> {ts} +0000\n".encode())
        out.append(f"committer {author} <{email}> {ts} +0000\n".encode())
        out.append(_data(message))
        if n > 1:
            out.append(b"from :%d\n" % (n - 1))
        out.append(f"M 100644 inline {path}\n".encode())
        out.append(_data(f"{path} revision {files[path]}\n"))
        if n in tags:
            name, annotated = tags[n]
            if annotated:
                out.append(f"tag {name}\nfrom :{n}\n".encode())
                out.append(f"tagger {author} <{email}> {ts + 60} +0000\n".encode())
                out.append(_data(f"Release {name}"))
            else:
                out.append(f"reset refs/tags/{name}\nfrom :{n}\n\n".encode())
    # A fix that is not on main yet: the demo's first hotfix candidate.
    ts += 3600
    out.append(b"commit refs/heads/fix/PAY-42-rounding\n")
    out.append(b"mark :%d\n" % (COMMITS + 1))
    out.append(f"author Ana Silva <ana@example.com> {ts} +0000\n".encode())
    out.append(f"committer Ana Silva <ana@example.com> {ts} +0000\n".encode())
    out.append(_data("fix(payments): round refund totals half-even (#999)\n\nFixes PAY-42"))
    out.append(b"from :%d\n" % COMMITS)
    out.append(b"M 100644 inline services/payments/rounding.txt\n")
    out.append(_data("half-even\n"))
    return b"".join(out)


def config_text(folder: Path) -> str:
    """The demo's configuration file: qa, beta and prod with command drivers that simulate a deploy."""
    state = folder / "deployed"
    python = sys.executable
    # Seconds per simulated deploy step (tests make it short).
    step = os.environ.get("RELAPP_DEMO_STEP_SECONDS", "0.8")

    def driver(env: str) -> str:
        argv = [python, "-m", "relapp.demo_deploy", "{environment}", "{tag}", str(state), step]
        quoted = ", ".join(f'"{a}"' for a in argv)
        return f'driver = {{ kind = "command", argv = [{quoted}], timeout = 120 }}'

    return f'''# relapp demo configuration: loaded by `flask --app relapp config sync {folder / "relapp.toml"}`.
[[projects]]
key = "demo"
name = "Demo shop"
remote = "{folder / "origin.git"}"
main_branch = "main"
tag_template = "v{{version}}"
release_branch_template = "release/{{major}}.{{minor}}"
baseline = "0.1.0"
issue_key_pattern = "(PAY|SRCH|PLAT)-[0-9]+"
issue_url_template = "https://jira.example.com/browse/{{key}}"
timezone = "Europe/Berlin"
train = {{ cron = "0 10 * * MON" }}

[[projects.environments]]
name = "qa"
deploy_roles = ["engineer", "release", "admin"]
decide_roles = ["qa", "admin"]
{driver("qa")}

[[projects.environments]]
name = "beta"
requires_go_from = "qa"
deploy_roles = ["engineer", "release", "admin"]
decide_roles = ["qa", "release", "admin"]
{driver("beta")}

[[projects.environments]]
name = "prod"
requires_go_from = "beta"
deploy_roles = ["release", "admin"]
decide_roles = ["release", "admin"]
separation_of_duties = true
{driver("prod")}

[[projects.teams]]
name = "payments"
paths = ["services/payments/"]

[[projects.teams]]
name = "search"
paths = ["services/search/"]

[[projects.teams]]
name = "platform"
paths = ["platform/"]
'''


def build(folder: Path) -> Path:
    """Create the demo repository, its bare origin and its configuration file; return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    origin = folder / "origin.git"
    if not origin.exists():
        gitops.init_bare(origin)
        gitops.fast_import(origin, history_stream())
    (folder / "deployed").mkdir(exist_ok=True)
    config = folder / "relapp.toml"
    config.write_text(config_text(folder), encoding="utf-8")
    return config
