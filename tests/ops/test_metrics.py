"""`/metrics`: request counters and latencies per endpoint, jobs by kind and status, RQ queue
depths and deploy durations read from the database and Redis at scrape time, open live streams;
served to loopback (or a bearer token) only; and under a real gunicorn with two workers every
request is counted whichever worker served it or the scrape, and a dead worker's open streams
stop counting while its requests stay counted."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relapp.extensions import db, get_queue
from relapp.models import Deployment, Environment, Job, Project, Release, utcnow
from relapp.services.accounts import create_user
from relapp.services.live import stream_open
from tests.ops.conftest import production_env
from tests.processes import wait_for


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by (name, labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(client: Any, **kwargs: Any) -> dict[Any, float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def test_requests_are_counted_by_endpoint_and_status(app: Any) -> None:
    client = app.test_client()
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.get("/no/such/page")
    client.open("/healthz", method="BREW")  # a method nobody lists: counted as "other"
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta("relapp_http_requests_total", method="GET", endpoint="health.healthz", status="200") == 3
    assert delta("relapp_http_requests_total", method="GET", endpoint="none", status="404") == 1
    assert delta("relapp_http_requests_total", method="other", endpoint="none", status="405") == 1
    assert delta("relapp_http_request_duration_seconds_count", method="GET", endpoint="health.healthz") == 3
    assert delta("relapp_http_request_duration_seconds_bucket", method="GET", endpoint="health.healthz",
                 le="+Inf") == 3


def test_installation_state_is_read_at_scrape_time(app_ctx: Any) -> None:
    project = Project(key="shop", name="Shop", remote_url="/nowhere.git")
    db.session.add(project)
    db.session.flush()
    qa = Environment(project_id=project.id, name="qa", position=0)
    db.session.add(qa)
    release = Release(project_id=project.id, version="1.0.0", major=1, minor=0, patch=0, kind="minor",
                      tag="v1.0.0", state="tagged")
    db.session.add(release)
    db.session.flush()
    now = utcnow()
    for status, count in (("succeeded", 3), ("failed", 2), ("queued", 1), ("running", 1)):
        for _ in range(count):
            db.session.add(Job(kind="deploy", status=status))
    db.session.add(Job(kind="tag_release", status="succeeded"))
    # Two deploys in the window (40 s and 400 s), one long ago, one without a start.
    for seconds, ended_ago, status in ((40, 60, "succeeded"), (400, 600, "failed"),
                                       (30, 3 * 86400, "succeeded")):
        finished = now - timedelta(seconds=ended_ago)
        db.session.add(Deployment(release_id=release.id, environment_id=qa.id, status=status,
                                  started_at=finished - timedelta(seconds=seconds), finished_at=finished))
    db.session.add(Deployment(release_id=release.id, environment_id=qa.id, status="cancelled",
                              finished_at=now))
    db.session.commit()
    for _ in range(4):
        get_queue("deploy").enqueue("logging.info", "never run")
    get_queue("git").enqueue("logging.info", "never run")
    base = app_ctx.config["RQ_QUEUE"]

    client = app_ctx.test_client()
    with stream_open("events"), stream_open("events"), stream_open("job"):
        found = scrape(client)
        assert value(found, "relapp_open_streams", stream="events") == 2
        assert value(found, "relapp_open_streams", stream="job") == 1
    assert value(scrape(client), "relapp_open_streams", stream="events") == 0

    assert value(found, "relapp_jobs_finished_total", kind="deploy", outcome="succeeded") == 3
    assert value(found, "relapp_jobs_finished_total", kind="deploy", outcome="failed") == 2
    assert value(found, "relapp_jobs_finished_total", kind="tag_release", outcome="succeeded") == 1
    assert value(found, "relapp_jobs_active", kind="deploy", status="queued") == 1
    assert value(found, "relapp_jobs_active", kind="deploy", status="running") == 1
    assert value(found, "relapp_queue_depth", queue=f"{base}-deploy", kind="deploy") == 4
    assert value(found, "relapp_queue_depth", queue=f"{base}-git", kind="git") == 1
    assert value(found, "relapp_queue_depth", queue=f"{base}-schedule", kind="schedule") == 0
    ok = {"project": "shop", "environment": "qa", "outcome": "succeeded"}
    failed = {**ok, "outcome": "failed"}
    assert value(found, "relapp_deploy_duration_seconds_bucket", le="30.0", **ok) == 0
    assert value(found, "relapp_deploy_duration_seconds_bucket", le="60.0", **ok) == 1
    assert value(found, "relapp_deploy_duration_seconds_bucket", le="+Inf", **ok) == 1  # not 3 days ago
    assert value(found, "relapp_deploy_duration_seconds_gsum", **ok) == 40
    assert value(found, "relapp_deploy_duration_seconds_bucket", le="300.0", **failed) == 0
    assert value(found, "relapp_deploy_duration_seconds_bucket", le="600.0", **failed) == 1
    assert value(found, "relapp_metrics_source_up", source="database") == 1
    assert value(found, "relapp_metrics_source_up", source="redis") == 1


def test_a_source_that_does_not_answer_is_reported_not_fatal(app: Any) -> None:
    from tests.conftest import free_port
    from tests.faults.conftest import use_redis

    use_redis(app, f"redis://127.0.0.1:{free_port()}/0")
    app.config.pop("RELAPP_EMBEDDED_REDIS", None)
    found = scrape(app.test_client())
    assert value(found, "relapp_metrics_source_up", source="redis") == 0
    assert value(found, "relapp_metrics_source_up", source="database") == 1


def test_metrics_stay_off_the_internet(app: Any) -> None:
    client = app.test_client()
    far = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert far.status_code == 403 and far.mimetype == "application/problem+json"
    assert "loopback only" in far.get_json()["detail"]
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403  # a local proxy forwarding the internet is not loopback
    assert client.get("/metrics").status_code == 200

    app.config["RELAPP_METRICS_TOKEN"] = "scrape-token-of-this-test"
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-of-this-test"},
                       environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert right.status_code == 200 and b"relapp_http_requests_total" in right.data


# -- a real gunicorn with two workers ----------------------------------------------------------


def _sign_in(url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page[:500]
    answer = client.post("/login", data={"username": username, "password": "pass",
                                         "csrf_token": token.group(1)})
    assert answer.status_code == 302, answer.text[:500]
    return client


def _access_lines(out: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_gunicorn_counts_every_worker_and_forgets_dead_streams(
        app_ctx: Any, worker_env: dict[str, str], gunicorn: Callable[..., Any]) -> None:
    create_user("ops", "pass", "viewer")
    db.session.commit()
    server = gunicorn(production_env(worker_env, RELAPP_SSE_MAX_SECONDS="600"), workers=2)
    workers = server.worker_pids()
    assert len(workers) == 2

    def metrics() -> dict[Any, float]:
        answer = httpx.get(f"{server.url}/metrics", timeout=30)
        assert answer.status_code == 200, answer.text
        return samples(answer.text)

    def healthz_count(found: dict[Any, float]) -> float:
        return value(found, "relapp_http_requests_total", method="GET", endpoint="health.healthz",
                     status="200") or 0

    # Requests spread over both workers (each on a connection of its own); every one is counted
    # by a scrape, whichever worker serves the scrape.
    baseline, sent = healthz_count(metrics()), 0
    started = time.monotonic()

    def probe(i: int) -> int:
        return httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": f"probe-{i}"},
                         timeout=30).status_code

    def served_by() -> set[int]:
        return {line["pid"] for line in _access_lines(server.out) if line.get("path") == "/healthz"
                and str(line.get("request_id", "")).startswith("probe-")}

    with ThreadPoolExecutor(8) as pool:
        while served_by() != set(workers):
            assert sent < 2000, f"only {served_by()} of {workers} served {sent} requests"
            assert list(pool.map(probe, range(sent, sent + 40))) == [200] * 40
            sent += 40
    print(f"\n{sent} requests until both workers had served; {time.monotonic() - started:.1f} s")
    for _ in range(3):  # scrapes served by either worker see the same sum
        assert healthz_count(metrics()) == baseline + sent

    # An open stream counts while its worker lives; killed workers' streams no longer count,
    # their requests still do.
    client = _sign_in(server.url, "ops")
    opened = threading.Event()
    with client.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        for chunk in stream.iter_text():
            if "hello" in chunk:
                opened.set()
                break
        assert opened.is_set()
        assert value(metrics(), "relapp_open_streams", stream="events") == 1
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_for("gunicorn to replace both workers",
                 lambda: len(set(server.worker_pids()) - set(workers)) == 2, deadline=90)
    wait_for("a new worker to serve", server.serving, deadline=90, pause=0.3)
    print(f"workers replaced and serving after {time.monotonic() - started:.1f} s")
    found = metrics()
    assert (value(found, "relapp_open_streams", stream="events") or 0) == 0
    assert healthz_count(found) >= baseline + sent
    client.close()

    # The access log is JSON lines with the caller's request id; so are gunicorn's own lines.
    lines = _access_lines(server.out)
    probes = [line for line in lines if str(line.get("request_id", "")).startswith("probe-")]
    assert len(probes) == sent
    assert {line["request_id"] for line in probes} == {f"probe-{i}" for i in range(sent)}
    assert all(line["logger"] == "gunicorn.access" and line["status"] == 200 and line["method"] == "GET"
               and {"time", "level", "message", "duration_ms", "pid"} <= line.keys() for line in probes)
    errors = [json.loads(line) for line in server.err.read_text().splitlines()
              if line.startswith("{")]
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"]
               for line in errors)
