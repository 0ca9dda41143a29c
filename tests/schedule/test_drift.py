"""Drift: a real HTTP server on 127.0.0.1 says what runs; relapp compares it with the recorded deploy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from relapp.extensions import db, get_queue
from relapp.jobs import schedule as jobs
from relapp.models import AuditEvent, Deployment, Environment, Release, rq_job_id, utcnow
from relapp.services import drift
from relapp.services.adoption import adopt_into_db


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"1.3.0\n"
    content_type: str = "text/plain"
    delay: float = 0.0
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def version_server() -> Iterator[tuple[str, Answer]]:
    """A real HTTP server on loopback whose answer a test sets."""
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer.requests.append(self.path)
            if answer.delay:
                time.sleep(answer.delay)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            try:
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", answer
    server.shutdown()
    server.server_close()


def qa(app: Any, url: str) -> Environment:
    env = db.session.scalar(select(Environment).where(Environment.name == "qa"))
    env.version_url = url
    db.session.commit()
    return env


def record_deploy(env: Environment, version: str) -> None:
    """A succeeded deployment of `version` to `env`, as the deploy job would leave it."""
    release = db.session.scalar(select(Release).where(Release.version == version))
    db.session.add(Deployment(release_id=release.id, environment_id=env.id, status="succeeded",
                              finished_at=utcnow()))
    db.session.commit()


@pytest.fixture
def allowed(app: Any, version_server: tuple[str, Answer]) -> tuple[str, Answer]:
    host, answer = version_server
    app.config["RELAPP_ALLOW_HOSTS"] = f"example.invalid, {host}"
    return host, answer


def drift_events() -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "environment.drift")
                                   .order_by(AuditEvent.id)))


def test_a_different_version_is_drift_and_the_same_is_not(app, demo_project, allowed):
    host, answer = allowed
    adopt_into_db("demo")
    env = qa(app, f"http://{host}/version?token=abc")
    record_deploy(env, "1.2.0")

    result = drift.check_environment(env.id)
    assert (result.observed_version, result.recorded_version, result.drift, result.error) == ("1.3.0", "1.2.0", True, None)
    assert result.changed and "recorded 1.2.0" in result.sentence
    db.session.expire_all()
    env = db.session.get(Environment, env.id)
    assert env.observed_version == "1.3.0" and env.observed_error is None and env.observed_at is not None
    assert drift.is_drifting(env) is True
    events = drift_events()
    assert len(events) == 1 and events[0].after == {"drift": True, "observed": "1.3.0", "recorded": "1.2.0"}
    assert events[0].actor == "relapp-drift" and events[0].target == "environment:demo/qa"
    assert answer.requests == ["/version?token=abc"]

    # The same answer again: still drift, nothing new to audit.
    assert drift.check_environment(env.id).changed is False
    assert len(drift_events()) == 1

    answer.body = b'{"version": "v1.2.0", "commit": "abc"}'
    answer.content_type = "application/json"
    result = drift.check_environment(env.id)
    assert (result.observed_version, result.drift, result.changed) == ("1.2.0", False, True)
    assert drift_events()[-1].after["drift"] is False and "drift ended" in drift_events()[-1].detail
    db.session.expire_all()
    assert drift.is_drifting(db.session.get(Environment, env.id)) is False


def test_a_deploy_that_moves_the_record_is_not_a_drift_event(app, demo_project, allowed):
    host, answer = allowed
    adopt_into_db("demo")
    env = qa(app, f"http://{host}/version")
    record_deploy(env, "1.2.0")
    answer.body = b"1.2.0"
    assert drift.check_environment(env.id).drift is False
    record_deploy(env, "1.1.0")  # a rollback recorded; the environment still reports 1.2.0
    result = drift.check_environment(env.id)
    assert result.drift is True and result.recorded_version == "1.1.0"
    answer.body = b"1.1.0"
    assert drift.check_environment(env.id).drift is False
    assert [e.after["drift"] for e in drift_events()] == [True, False]


@pytest.mark.parametrize(("status", "body", "delay", "expected"), [
    (500, b"oops", 0.0, "answered HTTP 500"),
    (302, b"", 0.0, "does not follow redirects"),
    (200, b"hello world", 0.0, "is not a version like 1.4.0"),
    (200, b"", 0.0, "empty"),
    (200, b'{"name": "shop"}', 0.0, 'no "version" field'),
    (200, b"1" * (70 * 1024), 0.0, "larger than 64 KB"),
    (200, b"1.3.0", 2.0, "did not answer within 0.3 s"),
])
def test_a_bad_answer_is_a_sentence_not_a_crash(app, demo_project, allowed, status, body, delay, expected):
    host, answer = allowed
    # Only the slow answer meets the short timeout: on a loaded machine 0.3 s can pass before a
    # quick answer arrives, and those cases are about what the answer says.
    app.config["RELAPP_DRIFT_TIMEOUT"] = 0.3 if delay else 10
    adopt_into_db("demo")
    env = qa(app, f"http://{host}/version")
    record_deploy(env, "1.2.0")
    answer.status, answer.body, answer.delay = status, body, delay
    result = drift.check_environment(env.id)
    assert result.drift is None and result.observed_version is None
    assert expected in result.error, result.error
    assert "version check failed" in result.sentence
    db.session.expire_all()
    env = db.session.get(Environment, env.id)
    assert expected in env.observed_error and env.observed_version is None
    assert drift.is_drifting(env) is None
    assert drift_events() == [] and answer.requests == ["/version"]


def test_an_error_keeps_the_last_seen_version_and_the_drift_state(app, demo_project, allowed):
    host, answer = allowed
    adopt_into_db("demo")
    env = qa(app, f"http://{host}/version")
    record_deploy(env, "1.2.0")
    drift.check_environment(env.id)
    answer.status = 503
    result = drift.check_environment(env.id)
    assert result.error and result.drift is None
    db.session.expire_all()
    env = db.session.get(Environment, env.id)
    assert env.observed_version == "1.3.0" and "HTTP 503" in env.observed_error
    assert len(drift_events()) == 1


@pytest.mark.parametrize("allow", [None, "driver"])
def test_an_internal_target_without_allowance_is_blocked_before_any_request(app, demo_project, version_server,
                                                                            allow):
    host, answer = version_server
    app.config["RELAPP_ALLOW_HOSTS"] = ""
    env = qa(app, f"http://{host}/version")
    if allow == "driver":
        # A webhook driver's allow_hosts also covers the version URL; here it names another host.
        env.driver = {"kind": "webhook", "url": "https://cd.example.com/hook", "secret": "s",
                      "allow_hosts": ["10.0.0.7"]}
        db.session.commit()
    result = drift.check_environment(env.id)
    assert "blocked" in result.error and "loopback" in result.error
    assert answer.requests == []
    for url in ("http://10.1.2.3/version", "http://169.254.169.254/latest/meta-data", "http://[::1]:9/v"):
        env = qa(app, url)
        result = drift.check_environment(env.id)
        assert "blocked" in result.error, url


def test_a_webhook_drivers_allow_hosts_admits_the_version_url(app, demo_project, version_server):
    host, _answer = version_server
    app.config["RELAPP_ALLOW_HOSTS"] = ""
    env = qa(app, f"http://{host}/version")
    env.driver = {"kind": "webhook", "url": "https://cd.example.com/hook", "secret": "s", "allow_hosts": [host]}
    db.session.commit()
    result = drift.check_environment(env.id)
    assert result.observed_version == "1.3.0" and result.error is None
    assert result.drift is True and result.recorded_version is None  # nothing recorded yet


def test_check_all_covers_environments_with_a_version_url(app, demo_project, allowed):
    host, answer = allowed
    qa(app, f"http://{host}/qa")
    beta = db.session.scalar(select(Environment).where(Environment.name == "beta"))
    beta.version_url = f"http://{host}/beta"
    db.session.commit()
    results = drift.check_all()
    assert [r.environment for r in results] == ["qa", "beta"]
    assert sorted(answer.requests) == ["/beta", "/qa"]


def test_schedule_check_puts_one_job_on_rqs_scheduler(app, demo_project):
    env = qa(app, "http://example.invalid/version")
    registry = ScheduledJobRegistry(queue=get_queue("schedule"))
    first = drift.schedule_check(env.id, delay=30)
    second = drift.schedule_check(env.id, delay=30)
    assert first is not None and first.startswith(rq_job_id(f"drift-check-{env.id}-"))
    ids = registry.get_job_ids()
    assert first in ids and (second == first or second in ids)
    assert all(i.startswith(rq_job_id(f"drift-check-{env.id}-")) for i in ids) and len(ids) <= 2
    beta = db.session.scalar(select(Environment).where(Environment.name == "beta"))
    assert drift.schedule_check(beta.id) is None  # no version URL, nothing to check
    assert all(not i.startswith(rq_job_id(f"drift-check-{beta.id}-")) for i in registry.get_job_ids())


def test_drift_ticks_are_scheduled_once_per_slot_and_reschedule_themselves(app, demo_project, allowed):
    host, _answer = allowed
    env = qa(app, f"http://{host}/version")
    registry = ScheduledJobRegistry(queue=get_queue("schedule"))
    assert jobs.schedule_drift_tick() == jobs.schedule_drift_tick()
    ticks = [i for i in registry.get_job_ids() if i.startswith(rq_job_id("drift-tick-"))]
    assert len(ticks) == 1
    slot = int(ticks[0].removeprefix(rq_job_id("drift-tick-")))
    assert slot % 300 == 0 and slot > utcnow().timestamp()

    outcome = jobs.drift_tick()
    assert outcome == {"checked": 1, "drifting": ["qa"], "failed": []}
    assert len([i for i in registry.get_job_ids() if i.startswith(rq_job_id("drift-tick-"))]) == 1
    db.session.expire_all()
    assert db.session.get(Environment, env.id).observed_version == "1.3.0"


def test_check_drift_job_runs_through_a_real_worker(app, demo_project, allowed):
    from rq import SimpleWorker

    host, _answer = allowed
    env = qa(app, f"http://{host}/version")
    queue = get_queue("schedule")
    job = queue.enqueue("relapp.jobs.schedule.check_drift", env.id)
    db.session.commit()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    job.refresh()
    assert job.return_value() == {"environment_id": env.id, "drift": True, "error": None,
                                  "observed": "1.3.0", "recorded": None}
