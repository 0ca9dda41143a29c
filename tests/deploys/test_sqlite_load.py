"""A small team's load on the embedded default (SQLite + embedded Redis), as `make run` serves it:
ten API clients poll while forty deploys run one after another; no 503, no 500, no deploy lost
or abandoned (issue 9, findings 1 and 2).

It runs once, on the embedded default only: `live_server` starts `python -m relapp.run` without
DATABASE_URL or REDIS_URL (gunicorn, the RQ worker and its maintenance companion, the embedded
Redis), whatever backends the rest of the suite runs on. Run with `-s` to see the figures; the
test asserts on counts, never on time.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# Its own group: the module-scoped live server and the forty-second run stay on one xdist
# worker, as one unit of work that is never split.
pytestmark = pytest.mark.xdist_group("sqlite-load")

POLLERS = 10
DEPLOYS = 40
POLL_SECONDS = 30.0
# The deploy command: four steps of 0.05 s, about 0.2 s in all, each printing a log line (the
# demo's own command imports relapp first, which alone takes seconds on a busy machine).
# (No braces in it: the driver reads {name} in argv as a placeholder.)
DEPLOY_SCRIPT = ("import sys, time\n"
                 "for step in range(1, 5):\n"
                 "    print('[%d/4] deploying %s to %s' % (step, sys.argv[2], sys.argv[1]), "
                 "flush=True)\n"
                 "    time.sleep(0.05)\n")
DEPLOY_WAIT_SECONDS = 90.0  # a deploy still active after this is reported, not waited for
FINISHED = ("succeeded", "failed", "cancelled")
# Written by relapp.create_app's guard when a write upgrades a read transaction on SQLite.
UPGRADE_WARNING = "write in a read transaction"


@dataclass
class Tally:
    """What the clients saw: one (path kind, status, seconds) per request."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[tuple[str, int, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, kind: str, status: int, seconds: float, body: str = "") -> None:
        with self.lock:
            self.requests.append((kind, status, seconds))
            if status != 200 and len(self.failures) < 20:
                self.failures.append(f"{kind} {status}: {body[:300]}")


@dataclass
class Site:
    """The live server's URL, the demo release to deploy and the API tokens."""

    url: str
    instance: Path
    version: str
    deployer: str
    admin: str
    pollers: list[str]


def _quick_demo_config(folder: Path) -> str:
    """The demo's configuration with the quick deploy command in each environment."""
    from relapp import demo

    argv = [sys.executable, "-I", "-S", "-c", DEPLOY_SCRIPT, "{environment}", "{tag}"]
    driver = (f"driver = {{ kind = \"command\", argv = [{', '.join(json.dumps(a) for a in argv)}], "
              f"timeout = 120 }}")
    text, count = re.subn(r"(?m)^driver = .*$", lambda _: driver, demo.config_text(folder))
    assert count == 3, text
    return text


@pytest.fixture(scope="module")
def site(live_server: dict[str, Any]) -> Iterator[Site]:
    """The live server's demo with the quick deploy command (its config synced again) and API
    tokens: one per poller (each token records its own use), the deployer's, an admin's."""
    from relapp import create_app
    from relapp.embedded import url_for_folder
    from relapp.extensions import db
    from relapp.services.accounts import create_token
    from relapp.services.projects import sync_settings
    from relapp.settings import load

    instance = live_server["instance"]
    app = create_app({"INSTANCE_PATH": str(instance), "RELAPP_DEMO": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'relapp.sqlite3'}",
                      "REDIS_URL": url_for_folder(instance / "redis")})
    config = instance / "demo" / "relapp-quick.toml"
    config.write_text(_quick_demo_config(instance / "demo"), encoding="utf-8")
    with app.app_context():
        sync_settings(load(config), actor="test")
        pollers = [create_token("viewer", f"poller {n}", actor="test")[1] for n in range(POLLERS)]
        deployer = create_token("engineer", "deployer", actor="test")[1]
        admin = create_token("admin", "auditor", actor="test")[1]
        db.session.remove()
        db.engine.dispose()
    releases = httpx.get(f"{live_server['url']}/api/v1/projects/demo/releases",
                         headers={"Authorization": f"Bearer {deployer}"}, timeout=30).json()
    tagged = [r["version"] for r in releases["releases"] if r["state"] == "tagged"]
    assert tagged, releases
    yield Site(url=live_server["url"], instance=instance, version=tagged[0], deployer=deployer,
               admin=admin, pollers=pollers)


def _poll(site: Site, token: str, stop: threading.Event, tally: Tally) -> None:
    """One client: the project list, the environments (what runs, the active deploy) and the
    release, round and round until told to stop."""
    paths = {"projects": "/api/v1/projects", "environments": "/api/v1/projects/demo/environments",
             "release": f"/api/v1/projects/demo/releases/{site.version}"}
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as client:
        while not stop.is_set():
            for kind, path in paths.items():
                started = time.monotonic()
                try:
                    response = client.get(path)
                except httpx.HTTPError as exc:
                    tally.add(kind, 0, time.monotonic() - started, repr(exc))
                    continue
                tally.add(kind, response.status_code, time.monotonic() - started,
                          response.text if response.status_code != 200 else "")


def _deploy_one_after_another(site: Site, tally: Tally) -> list[dict[str, Any]]:
    """Ask for DEPLOYS deploys of the release to qa, each once the previous one has ended; the
    last state seen of each."""
    seen: list[dict[str, Any]] = []
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {site.deployer}"},
                      timeout=60) as client:
        for _ in range(DEPLOYS):
            started = time.monotonic()
            response = client.post(f"/api/v1/projects/demo/releases/{site.version}/deployments",
                                   json={"environment": "qa"})
            tally.add("deploy", 200 if response.status_code == 202 else response.status_code,
                      time.monotonic() - started, response.text)
            if response.status_code != 202:
                continue
            deployment = response.json()["deployment"]
            deadline = time.monotonic() + DEPLOY_WAIT_SECONDS
            while time.monotonic() < deadline:
                job = deployment.get("job") or {}
                # A crashed job leaves its deployment running until the lease runs out: that is
                # already a failure, so stop waiting for it.
                if deployment["status"] in FINISHED or job.get("status") in FINISHED:
                    break
                time.sleep(0.05)
                started = time.monotonic()
                answer = client.get(f"/api/v1/deployments/{deployment['id']}")
                tally.add("deployment", answer.status_code, time.monotonic() - started,
                          answer.text)
                if answer.status_code == 200:
                    deployment = answer.json()["deployment"]
            seen.append(deployment)
    return seen


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100)[int(share * 100) - 1] if len(values) > 1 else 0.0


@pytest.mark.timeout(480)
def test_ten_pollers_and_forty_deploys_get_no_503_and_no_abandoned_deploy(site: Site) -> None:
    tally = Tally()
    stop = threading.Event()
    clients = [threading.Thread(target=_poll, args=(site, token, stop, tally), daemon=True)
               for token in site.pollers]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    try:
        deployments = _deploy_one_after_another(site, tally)
        time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=90)
    elapsed = time.monotonic() - started

    polls = [(kind, status, seconds) for kind, status, seconds in tally.requests
             if kind not in ("deploy", "deployment")]
    statuses = Counter(status for _, status, _ in tally.requests)
    latencies = [seconds for _, _, seconds in polls]
    outcomes = Counter(d["status"] for d in deployments)
    print(f"\n{len(tally.requests)} requests in {elapsed:.1f} s ({len(polls)} polls by {POLLERS} "
          f"clients, {DEPLOYS} deploys asked for one after another); statuses {dict(statuses)}; "
          f"poll latency p50 {_percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p95 {_percentile(latencies, 0.95) * 1000:.0f} ms; deployments {dict(outcomes)}")
    for line in tally.failures:
        print("  ", line)

    audit = httpx.get(f"{site.url}/api/v1/audit", params={"action": "deploy.abandoned"},
                      headers={"Authorization": f"Bearer {site.admin}"}, timeout=30)
    assert audit.status_code == 200, audit.text
    abandoned = audit.json()["events"]

    assert all(thread.is_alive() is False for thread in clients)
    assert polls and statuses == {200: len(tally.requests)}, tally.failures
    assert outcomes == {"succeeded": DEPLOYS}, [
        (d["id"], d["status"], d["message"], (d.get("job") or {}).get("error")) for d in deployments
        if d["status"] != "succeeded"]
    assert not [d for d in deployments if "abandoned" in (d["message"] or "")]
    assert abandoned == [], abandoned
    # The rule behind it: on SQLite nothing writes in a transaction that began as a read.
    log = (site.instance / "run.log").read_text(errors="replace")
    assert UPGRADE_WARNING not in log, [line for line in log.splitlines()
                                         if UPGRADE_WARNING in line][:5]


# -- the primitives behind it, on both backends ---------------------------------------------------


def _scratch(backend: dict[str, str]) -> Any:
    """A table of the test's own database for these tests to write to, and an engine of its own
    (another writer: a second connection, or the one that ends our session's connection)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from relapp import normalise_database_url

    other = create_engine(normalise_database_url(backend["database"]), poolclass=NullPool)
    with other.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS load_scratch (n INTEGER)"))
    return other


def _refuse_once(backend: dict[str, str], other: Any) -> None:
    """What another process does to our transaction: on SQLite it commits a write after our read
    began (our write is then an upgrade SQLite refuses at once); on PostgreSQL our connection is
    dropped (pg_terminate_backend)."""
    from sqlalchemy import text

    from relapp.extensions import db

    with other.begin() as conn:
        if backend["database"].startswith("sqlite"):
            conn.execute(text("INSERT INTO load_scratch (n) VALUES (0)"))
        else:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                         {"pid": db.session.scalar(text("SELECT pg_backend_pid()"))})


def _rows(other: Any) -> list[int]:
    from sqlalchemy import text

    with other.connect() as conn:
        return sorted(conn.scalars(text("SELECT n FROM load_scratch")))


def test_a_read_the_database_refused_for_a_moment_is_answered_not_503(app, backend, caplog):
    """A GET whose view reads, then writes, while another writer commits (SQLite), or whose
    connection drops (PostgreSQL): its view runs again and the answer is 200, not 503."""
    from sqlalchemy import text

    from relapp.extensions import db

    other = _scratch(backend)
    tries: list[int] = []

    def busy_read() -> str:
        tries.append(len(tries) + 1)
        db.session.execute(text("SELECT count(*) FROM load_scratch")).scalar()
        if len(tries) == 1:
            _refuse_once(backend, other)
        db.session.execute(text("INSERT INTO load_scratch (n) VALUES (:n)"), {"n": len(tries)})
        db.session.commit()
        return "read"

    app.add_url_rule("/_test/busy-read", "busy_read", busy_read)
    caplog.set_level("INFO", logger="relapp")
    response = app.test_client().get("/_test/busy-read")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "read")
    assert tries == [1, 2]
    # SQLite: the other writer's row and the second try's; the first try wrote nothing.
    assert _rows(other) == ([0, 2] if backend["database"].startswith("sqlite") else [2])
    if backend["database"].startswith("sqlite"):
        # The check of the rule: the write in a read transaction is named in the log.
        assert any(UPGRADE_WARNING in r.getMessage() and r.levelname == "WARNING"
                   for r in caplog.records)
    else:
        with other.begin() as conn:
            conn.execute(text("DROP TABLE load_scratch"))
    other.dispose()


def test_a_write_transaction_holds_the_lock_from_its_first_read_and_runs_again_when_refused(
        app_ctx, backend):
    """in_write_transaction: on SQLite no other writer gets in between its read and its write
    (BEGIN IMMEDIATE), so its write is never refused; on PostgreSQL a dropped connection runs the
    whole function again on a fresh one, and it commits once."""
    import sqlite3

    from sqlalchemy import text

    from relapp.extensions import db, in_write_transaction

    other = _scratch(backend)
    tries: list[int] = []

    def read_then_write() -> int:
        tries.append(len(tries) + 1)
        seen = db.session.execute(text("SELECT count(*) FROM load_scratch")).scalar()
        if backend["database"].startswith("sqlite"):
            path = backend["database"][len("sqlite:///"):]
            intruder = sqlite3.connect(path, timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                intruder.execute("BEGIN IMMEDIATE")
            intruder.close()
        elif len(tries) == 1:
            _refuse_once(backend, other)
        db.session.execute(text("INSERT INTO load_scratch (n) VALUES (:n)"), {"n": len(tries)})
        return int(seen or 0)

    assert in_write_transaction(read_then_write) == 0
    if backend["database"].startswith("sqlite"):
        assert (tries, _rows(other)) == ([1], [1])
    else:
        assert (tries, _rows(other)) == ([1, 2], [2])
        with other.begin() as conn:
            conn.execute(text("DROP TABLE load_scratch"))
    other.dispose()
