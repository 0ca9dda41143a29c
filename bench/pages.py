"""Benchmark: every page at the demo's size and with 100k releases behind it, on PostgreSQL.

Creates two databases of its own on the PostgreSQL server (dropped at the end). The first is
migrated and gets the demo project (as `flask demo` makes it) with a little history: 40 older
releases deployed to qa, a deploy of one of the last releases to each of qa, beta and prod (their
jobs with log lines), go decisions and a few hundred audit events. The second is a copy of it,
filled in bulk (INSERT … SELECT generate_series, foreign-key triggers off, indexes built after)
to 100k releases, 300k deployments, 400k jobs and 2M audit events, then ANALYZEd.

The filled history is older than the demo's: its rows carry negative ids and earlier times, so
what the pages show (the newest releases, what runs where) is the demo's own state in both
databases, and only the history behind it grew. Its releases are versions 0.100.0 … 0.10099.9 of
the demo project (ten patches per minor line). The 40 older demo releases fill every bounded list
(board, train window, "Compare with") on the demo too, so a ratio measures the history behind a
page, not a page filling up.

Every page is requested through the app's test client, signed in as the demo's admin; for each,
after a warm-up, the two databases take turns for --reps rounds, so load from elsewhere on the
machine hits both alike. Prints, per page: the median server time on each, their ratio, the HTML
size ratio and the SQL statements per request, with PASS when the time ratio is <= 3 and the
query count is unchanged; then the drift check's two reads, the audit action list against the
DISTINCT scan it replaced, and EXPLAIN ANALYZE of the indexed queries at scale. Timing never
changes the exit status.

Run: `.venv/bin/python bench/pages.py` (about 10 minutes on a busy 2-core machine, most of it the
fill; `--server postgresql://user@host:port/` picks the server, `--releases 20000` a smaller fill,
`--keep` keeps the databases).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# `python bench/pages.py` puts bench/ on the path; relapp's package imports config.py from the
# project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from sqlalchemy import event, select, text

from relapp import create_app
from relapp.extensions import db
from relapp.models import Environment, Job, Project, Release, User

TARGET_RATIO = 3.0


@dataclass
class Measure:
    """One page measured: median server time, HTML bytes, SQL statements per request."""

    seconds: float
    size: int
    queries: int
    status: int


# -- the database --------------------------------------------------------------------------------


@contextmanager
def scratch_databases(server: str, keep: bool) -> Iterator[tuple[str, str]]:
    """Two database names for this run (the demo's, and the filled copy); dropped afterwards
    unless kept. The first is created empty; `copy_database` makes the second."""
    names = (f"relapp_bench_pages_{os.getpid()}_demo", f"relapp_bench_pages_{os.getpid()}_100k")
    with psycopg.connect(admin_url(server), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{names[0]}"')
    try:
        yield names[0], names[1]
    finally:
        if keep:
            print(f"kept databases {', '.join(names)}")
        else:
            with psycopg.connect(admin_url(server), autocommit=True) as conn:
                for name in names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin_url(server: str) -> str:
    return server.rstrip("/") + "/postgres"


def database_url(server: str, name: str) -> str:
    return server.rstrip("/") + "/" + name


def copy_database(server: str, source: str, target: str) -> None:
    """The demo's database copied (CREATE DATABASE … TEMPLATE: nobody may be connected to it)."""
    with psycopg.connect(admin_url(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


# -- the demo and its history ----------------------------------------------------------------------


def seed_demo(app: Any) -> dict[str, Any]:
    """The demo project as `flask demo` makes it, plus a little history written through the
    services' own rows: each environment runs one of the last releases (a deploy job with log
    lines each), a go decision, and a lock and a drift event in the audit log."""
    from relapp.cli import ensure_demo
    from relapp.models import Decision, Deployment, JobLogLine
    from relapp.services import audit

    with app.app_context():
        ensure_demo(app)
        project = db.session.scalar(select(Project).where(Project.key == "demo"))
        assert project is not None
        envs = list(db.session.scalars(select(Environment).where(Environment.project_id == project.id)
                                       .order_by(Environment.position)))
        releases = list(db.session.scalars(select(Release).where(Release.project_id == project.id)
                                           .order_by(Release.major.desc(), Release.minor.desc(),
                                                     Release.patch.desc())))
        admin = db.session.scalar(select(User).where(User.username == "admin"))
        assert admin is not None, "the demo has no admin user"
        now = datetime.now(UTC)
        # Older releases (0.1.0 … 0.8.4, before the demo's tags), each deployed to qa: enough that
        # every bounded list (board, train window, "Compare with") is as full on the demo as at
        # 100k, so the ratio measures the history behind a page, not a page filling up.
        qa = envs[0]
        for n in range(EXTRA_RELEASES):
            minor, patch = 1 + n // 5, n % 5
            at = now - timedelta(days=80) + timedelta(hours=20 * n)
            extra = Release(project_id=project.id, version=f"0.{minor}.{patch}", major=0, minor=minor,
                            patch=patch, kind="minor" if patch == 0 else "hotfix", source="cut",
                            tag=f"v0.{minor}.{patch}", sha=f"{n:040x}", state="tagged", details={},
                            created_by_id=admin.id, created_at=at, tagged_at=at)
            db.session.add(extra)
            db.session.flush()
            db.session.add(Deployment(release_id=extra.id, environment_id=qa.id, status="succeeded",
                                      requested_by_id=admin.id, attempt=1, created_at=at,
                                      started_at=at, finished_at=at + timedelta(minutes=2)))
        job_id = 0
        for index, env in enumerate(envs):
            release = releases[min(index, len(releases) - 1)]
            job = Job(kind="deploy", status="succeeded", project_id=project.id, release_id=release.id,
                      requested_by_id=admin.id, payload={"environment": env.name}, attempt=1,
                      created_at=now - timedelta(hours=3 - index), started_at=now, finished_at=now)
            db.session.add(job)
            db.session.flush()
            for seq in range(1, 41):
                db.session.add(JobLogLine(job_id=job.id, seq=seq, line=f"[{seq}/40] {env.name}: step {seq}"))
            db.session.add(Deployment(release_id=release.id, environment_id=env.id, status="succeeded",
                                      job_id=job.id, requested_by_id=admin.id, attempt=1,
                                      created_at=job.created_at, started_at=now, finished_at=now))
            db.session.add(Decision(release_id=release.id, environment_id=env.id, decision="go",
                                    comment="looks good", bugs=[], by_id=admin.id))
            audit.record(admin, "deploy.request", project_id=project.id, target=f"environment:demo/{env.name}",
                         after={"version": release.version})
            job_id = job.id
        # A demo in use for a while: a few hundred audit events, so every audit filter fills a page.
        users = list(db.session.scalars(select(User).order_by(User.id)))
        for n in range(300):
            env = envs[n % len(envs)]
            audit.record(users[n % len(users)], AUDIT_ACTIONS[n % len(AUDIT_ACTIONS)], project_id=project.id,
                         target=f"environment:demo/{env.name}", before={"version": releases[-1].version},
                         after={"version": releases[0].version}, detail=f"demo event {n}")
        audit.record(admin, "environment.lock", project_id=project.id, target="environment:demo/prod",
                     after={"locked": True}, detail="bench")
        audit.record("relapp-drift", "environment.drift", project_id=project.id, target="environment:demo/prod",
                     after={"drift": False, "observed": releases[0].version, "recorded": releases[0].version})
        db.session.commit()
        return {"project_id": project.id, "env_ids": [e.id for e in envs], "admin_id": admin.id,
                "latest": releases[0].version, "job_id": job_id}


EXTRA_RELEASES = 40
AUDIT_ACTIONS = ("deploy.request", "deploy.finish", "deploy.cancel", "deploy.report", "release.cut",
                 "release.hotfix", "release.tag", "decision.record", "environment.lock",
                 "environment.unlock", "environment.freeze", "environment.drift", "user.create",
                 "token.create", "config.sync", "train.cut")
# The filled history's actions: mostly deploys and decisions, and one user.create in 5,000 events
# (a rare action, which only its index finds quickly).
BULK_ACTIONS = (*("deploy.request", "deploy.finish") * 6, *("decision.record",) * 4, *("release.cut",) * 2,
                "deploy.cancel", "deploy.report", "release.hotfix", "release.tag", "environment.lock",
                "environment.unlock", "environment.freeze", "environment.drift", "token.create", "train.cut")
AUDIT_ACTORS = ("admin", "release", "engineer", "qa", "relapp", "relapp-drift", "relapp-worker")


def fill(url: str, demo: dict[str, Any], releases: int, deployments: int, jobs: int,
         audit_events: int) -> dict[str, float]:
    """Older history behind the demo's, in bulk, with negative ids; the seconds each table took."""
    project, envs, admin = demo["project_id"], demo["env_ids"], demo["admin_id"]
    env_array = "ARRAY[" + ",".join(str(e) for e in envs) + "]"
    timings: dict[str, float] = {}
    statements = {
        "releases": f"""
            INSERT INTO releases (id, project_id, version, major, minor, patch, kind, source, tag, sha,
                                  state, details, created_by_id, created_at, tagged_at)
            SELECT -n, {project}, '0.' || (100 + (n - 1) / 10) || '.' || ((n - 1) % 10),
                   0, 100 + (n - 1) / 10, (n - 1) % 10,
                   CASE WHEN (n - 1) % 10 = 0 THEN 'minor' ELSE 'hotfix' END, 'cut',
                   'v0.' || (100 + (n - 1) / 10) || '.' || ((n - 1) % 10),
                   md5(n::text) || substr(md5((n + 1)::text), 1, 8), 'tagged', '{{}}', {admin},
                   now() - interval '30 days' - (n * interval '15 minutes'),
                   now() - interval '30 days' - (n * interval '15 minutes')
            FROM generate_series(1, {releases}) AS n""",
        "jobs": f"""
            INSERT INTO jobs (id, kind, status, project_id, release_id, requested_by_id, payload, error,
                              attempt, enqueued_at, created_at, started_at, finished_at)
            SELECT -n, CASE WHEN n <= {deployments} THEN 'deploy' ELSE 'tag_release' END,
                   CASE WHEN n % 20 = 0 THEN 'failed' ELSE 'succeeded' END, {project},
                   -(1 + (n - 1) % {releases}), {admin}, '{{}}',
                   CASE WHEN n % 20 = 0 THEN 'exit status 1' END, 1,
                   now() - interval '30 days' - (n * interval '5 minutes'),
                   now() - interval '30 days' - (n * interval '5 minutes'),
                   now() - interval '30 days' - (n * interval '5 minutes'),
                   now() - interval '30 days' - (n * interval '5 minutes') + interval '2 minutes'
            FROM generate_series(1, {jobs}) AS n""",
        "deployments": f"""
            INSERT INTO deployments (id, release_id, environment_id, status, job_id, requested_by_id,
                                     attempt, message, created_at, started_at, finished_at)
            SELECT -n, -(1 + (n - 1) % {releases}), ({env_array})[1 + n % {len(envs)}],
                   CASE WHEN n % 20 = 0 THEN 'failed' ELSE 'succeeded' END, -n, {admin}, 1, '',
                   now() - interval '30 days' - (n * interval '5 minutes'),
                   now() - interval '30 days' - (n * interval '5 minutes'),
                   now() - interval '30 days' - (n * interval '5 minutes') + interval '2 minutes'
            FROM generate_series(1, {deployments}) AS n""",
        "audit_events": f"""
            INSERT INTO audit_events (id, at, actor_id, actor, action, project_id, target, before, after,
                                      detail)
            SELECT -n, now() - interval '30 days' - (n * interval '40 seconds'), NULL,
                   (ARRAY['{"','".join(AUDIT_ACTORS)}'])[1 + n % {len(AUDIT_ACTORS)}],
                   CASE WHEN n % 5000 = 0 THEN 'user.create'
                        ELSE (ARRAY['{"','".join(BULK_ACTIONS)}'])[1 + (n / 7) % {len(BULK_ACTIONS)}] END,
                   CASE WHEN n % 9 = 0 THEN NULL ELSE {project} END,
                   'environment:demo/' || (ARRAY['qa','beta','prod'])[1 + n % 3],
                   NULL, '{{"version": "0.100.0"}}', 'bulk history ' || n
            FROM generate_series(1, {audit_events}) AS n""",
    }
    with psycopg.connect(url) as conn:
        # A bulk load as one does it: the rows are known to be consistent, so no per-row foreign
        # key triggers (session_replication_role, as the superuser the bench runs as), and the
        # secondary indexes are dropped and built again afterwards (one sorted build each is far
        # faster than two million inserts into each).
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = [row for row in conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)", (list(statements),))]
        for name, _definition in indexes:
            conn.execute(f"DROP INDEX {name}")
        for table, statement in statements.items():
            started = time.perf_counter()
            conn.execute(statement)
            conn.commit()
            timings[table] = time.perf_counter() - started
        started = time.perf_counter()
        for _name, definition in indexes:
            conn.execute(definition)
        conn.commit()
        timings[f"{len(indexes)} indexes"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("ANALYZE")
        conn.commit()
        timings["ANALYZE"] = time.perf_counter() - started
    return timings


# -- measuring ---------------------------------------------------------------------------------


class QueryCounter:
    """SQL statements the app's engine runs (attached once, read around each request)."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def sign_in(client: Any, username: str, password: str) -> None:
    import re

    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None, "no CSRF token on the sign-in page"
    answer = client.post("/login", data={"username": username, "password": password,
                                         "csrf_token": token.group(1)})
    assert answer.status_code == 302, f"sign-in as {username} failed: {answer.status_code}"


def measure_pair(clients: tuple[Any, Any], counters: tuple[QueryCounter, QueryCounter], path: str,
                 reps: int) -> tuple[Measure, Measure]:
    """The page on both databases: a warm-up each, then `reps` rounds in which the two take turns
    (so load from elsewhere on the machine hits both alike); median time, and the size and query
    count of the last request of each."""
    times: tuple[list[float], list[float]] = ([], [])
    last: list[tuple[int, int, int]] = [(0, 0, 0), (0, 0, 0)]
    for side in (0, 1):
        clients[side].get(path)
    for _ in range(reps):
        for side in (0, 1):
            before = counters[side].count
            started = time.perf_counter()
            answer = clients[side].get(path)
            body = answer.get_data()
            times[side].append(time.perf_counter() - started)
            last[side] = (len(body), counters[side].count - before, answer.status_code)
    small, big = (Measure(statistics.median(times[side]), *last[side]) for side in (0, 1))
    return small, big


def timed(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pages(demo: dict[str, Any]) -> list[tuple[str, str]]:
    latest, job_id = demo["latest"], demo["job_id"]
    return [
        ("board", "/?project=demo"),
        ("release page", f"/releases/demo/{latest}"),
        ("environments", "/environments?project=demo"),
        ("train", "/train?project=demo"),
        ("audit", "/audit"),
        ("audit ?action=deploy", "/audit?action=deploy"),
        ("audit ?action=user", "/audit?action=user"),
        ("audit ?actor=qa", "/audit?actor=qa"),
        ("audit ?project=demo", "/audit?project=demo"),
        ("tags (adoption)", "/projects/demo/adoption"),
        ("job page", f"/jobs/{job_id}"),
        ("me", "/me"),
        ("changelog.md", f"/releases/demo/{latest}/changelog.md"),
    ]


def measure_all(apps: tuple[Any, Any], counters: tuple[QueryCounter, QueryCounter], demo: dict[str, Any],
                reps: int) -> tuple[dict[str, Measure], dict[str, Measure]]:
    from relapp.demo import DEMO_PASSWORD

    clients = (apps[0].test_client(), apps[1].test_client())
    for client in clients:
        sign_in(client, "admin", DEMO_PASSWORD)
    small: dict[str, Measure] = {}
    big: dict[str, Measure] = {}
    for name, path in pages(demo):
        small[name], big[name] = measure_pair(clients, counters, path, reps)
        print(f"  measured {name}: {small[name].seconds * 1000:.0f} / {big[name].seconds * 1000:.0f} ms")
    return small, big


def reads(app: Any, reps: int) -> dict[str, float]:
    """The drift check's two reads for every environment, the audit action list, and the DISTINCT
    scan the action list replaced (for comparison; no page runs it any more)."""
    from relapp.services import audit, drift

    with app.app_context():
        envs = list(db.session.scalars(select(Environment)))

        def drift_reads() -> None:
            for env in envs:
                drift.recorded_version(env)
                drift.last_state(env)

        out = {
            "drift reads (all envs)": timed(drift_reads, reps),
            "audit action list (index skip)": timed(audit.known_actions, reps),
            "SELECT DISTINCT action (before)": timed(
                lambda: list(db.session.execute(text("SELECT DISTINCT action FROM audit_events"))), reps),
        }
        db.session.rollback()
        return out


def explain(url: str, demo: dict[str, Any]) -> list[str]:
    """The plan's first line for the audit filters and the drift reads, at scale."""
    env = demo["env_ids"][-1]
    queries = {
        "audit ?action=deploy.finish": "SELECT id FROM audit_events WHERE action = 'deploy.finish' "
                                       "ORDER BY id DESC LIMIT 51",
        "audit ?action=user.create": "SELECT id FROM audit_events WHERE action = 'user.create' "
                                     "ORDER BY id DESC LIMIT 51",
        "audit ?actor=qa": "SELECT id FROM audit_events WHERE actor = 'qa' ORDER BY id DESC LIMIT 51",
        "drift last state": "SELECT id FROM audit_events WHERE action = 'environment.drift' AND "
                            "target = 'environment:demo/prod' ORDER BY id DESC LIMIT 1",
        "drift recorded version": f"SELECT id FROM deployments WHERE environment_id = {env} AND "
                                  "status = 'succeeded' ORDER BY id DESC LIMIT 1",
        "queued jobs": "SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 100",
        "a release's jobs": "SELECT id FROM jobs WHERE release_id = -5 ORDER BY id",
    }
    lines = []
    with psycopg.connect(url) as conn:
        for name, sql in queries.items():
            plan = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql)]
            scans = [p.strip().removeprefix("-> ") for p in plan if "Scan" in p and "Heap" not in p]
            total = next((p for p in plan if p.startswith("Execution Time")), "")
            lines.append(f"  {name:<26} {scans[0] if scans else plan[0]:<70} {total}")
    return lines


# -- the report --------------------------------------------------------------------------------


def report(before: dict[str, Measure], after: dict[str, Measure]) -> bool:
    print(f"\n{'page':<22} {'demo ms':>8} {'100k ms':>8} {'ratio':>6} {'size':>7} {'queries':>9}  verdict")
    ok = True
    for name, small in before.items():
        big = after[name]
        ratio = big.seconds / small.seconds if small.seconds else float("inf")
        size = big.size / small.size if small.size else float("inf")
        passed = ratio <= TARGET_RATIO and big.queries == small.queries and big.status == small.status == 200
        ok = ok and passed
        status = "" if big.status == small.status == 200 else f" (HTTP {small.status}/{big.status})"
        print(f"{name:<22} {small.seconds * 1000:8.1f} {big.seconds * 1000:8.1f} {ratio:6.2f} {size:7.2f} "
              f"{small.queries:>4}/{big.queries:<4}  {'PASS' if passed else 'FAIL'}{status}")
    return ok


def make_app(url: str, tmp: Path, side: str, redis: str) -> Any:
    return create_app({
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(url), "REDIS_URL": redis,
        "RQ_QUEUE": f"relapp-bench-pages-{os.getpid()}-{side}", "SECRET_KEY": "bench-pages",
        "RELAPP_REPOS_DIR": str(tmp / f"repos-{side}"), "RELAPP_DEMO": True, "INSTANCE_PATH": str(tmp),
    })


def close(app: Any) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--releases", type=int, default=100_000,
                        help="releases of the filled database; deployments, jobs and audit events scale with it")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress as it goes
    scale = args.releases / 100_000
    sizes = {"releases": args.releases, "deployments": int(300_000 * scale), "jobs": int(400_000 * scale),
             "audit_events": int(2_000_000 * scale)}

    from flask_migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="relapp-bench-pages-") as folder, \
            scratch_databases(args.server, args.keep) as (small_db, big_db):
        tmp = Path(folder)
        small_url, big_url = database_url(args.server, small_db), database_url(args.server, big_db)
        small_app = make_app(small_url, tmp, "demo", args.redis)
        with small_app.app_context():
            started = time.perf_counter()
            upgrade()
            print(f"migrated in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        demo = seed_demo(small_app)
        print(f"demo created in {time.perf_counter() - started:.1f} s (latest release {demo['latest']})")
        close(small_app)
        copy_database(args.server, small_db, big_db)
        print("filling a copy: " + ", ".join(f"{n:,} {t}" for t, n in sizes.items()))
        timings = fill(big_url, demo, sizes["releases"], sizes["deployments"], sizes["jobs"],
                       sizes["audit_events"])
        print("fill took " + ", ".join(f"{t} {s:.1f} s" for t, s in timings.items())
              + f"; total {sum(timings.values()):.1f} s")
        with psycopg.connect(small_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        big_app = make_app(big_url, tmp, "100k", args.redis)
        apps = (small_app, big_app)
        counters = []
        for app in apps:
            with app.app_context():
                counters.append(QueryCounter(db.engine))
        before, after = measure_all(apps, (counters[0], counters[1]), demo, args.reps)
        reads_before, reads_after = reads(small_app, args.reps), reads(big_app, args.reps)

        ok = report(before, after)
        print(f"\n{'read':<34} {'demo ms':>8} {'100k ms':>8}")
        for name, small in reads_before.items():
            print(f"{name:<34} {small * 1000:8.2f} {reads_after[name] * 1000:8.2f}")
        print("\nplans at scale (EXPLAIN ANALYZE):")
        print("\n".join(explain(big_url, demo)))
        print(f"\n{'every page within' if ok else 'NOT every page within'} {TARGET_RATIO:g}x with the "
              "same query count")
        for app in apps:
            close(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
