"""The job log stream: ping first, replay, Last-Event-ID resume, live lines, status, done; bounded."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import update

from relapp.extensions import db
from relapp.joblog import JobLog, publish
from relapp.models import Job, JobLogLine, utcnow
from tests.conftest import login


def parse(body: str) -> list[dict[str, Any]]:
    """SSE blocks as dicts: id, event, data (decoded JSON), retry, comment."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event["comment"] = value
            elif name == "data":
                event["data"] = json.loads(value)
            else:
                event[name] = value
        events.append(event)
    return events


def make_job(status: str, lines: int) -> int:
    job = Job(kind="deploy", status=status, payload={})
    db.session.add(job)
    db.session.commit()
    job_id = job.id
    joblog = JobLog(job_id)
    db.session.commit()  # JobLog read through the session; SQLite must not keep that read open
    for n in range(1, lines + 1):
        joblog.write(f"line {n}")
    return job_id


def stream(shop, job_id: int, user: str = "vic", **headers: str) -> list[dict[str, Any]]:
    response = shop.client.get(f"/api/v1/jobs/{job_id}/stream",
                               headers={"Authorization": f"Bearer {shop.tokens[user]}", **headers})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    return parse(response.get_data(as_text=True))


def test_a_finished_job_is_replayed_after_a_ping_and_ends_with_done(shop):
    job_id = make_job("succeeded", 3)
    events = stream(shop, job_id)
    assert events[0] == {"retry": "2000"}
    assert events[1]["event"] == "ping" and "id" not in events[1]
    lines = [e for e in events if e.get("event") == "line"]
    assert [(e["id"], e["data"]["line"]) for e in lines] == [("1", "line 1"), ("2", "line 2"),
                                                             ("3", "line 3")]
    assert events[-2]["event"] == "status" and events[-2]["data"]["status"] == "succeeded"
    assert events[-1]["event"] == "done" and events[-1]["data"] == {
        "status": "succeeded", "error": None, "last": 3}


def test_last_event_id_resumes_after_the_last_line_seen(shop):
    job_id = make_job("failed", 5)
    events = stream(shop, job_id, **{"Last-Event-ID": "3"})
    assert [e["data"]["line"] for e in events if e.get("event") == "line"] == ["line 4", "line 5"]
    assert events[-1]["event"] == "done" and events[-1]["id"] == "5"
    body = shop.client.get(f"/api/v1/jobs/{job_id}/stream?after=4",
                           headers={"Authorization": f"Bearer {shop.tokens['vic']}"})
    assert [e["data"]["line"] for e in parse(body.get_data(as_text=True))
            if e.get("event") == "line"] == ["line 5"]


def feed(app, job_id: int, count: int, *, pause: float = 0.05) -> threading.Thread:
    """Another thread plays the worker: writes lines, then ends the job."""

    def run() -> None:
        with app.app_context():
            joblog = JobLog(job_id)
            db.session.commit()
            time.sleep(0.3)
            for n in range(1, count + 1):
                joblog.write(f"live {n}")
                time.sleep(pause)
            db.session.execute(update(Job).where(Job.id == job_id)
                               .values(status="succeeded", finished_at=utcnow()))
            db.session.commit()
            publish(job_id, {"type": "status", "status": "succeeded"})
            db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def stream_while_fed(app, shop, job_id: int, count: int) -> list[dict[str, Any]]:
    """The job's stream, read while another thread writes `count` live lines and then ends the job."""
    thread = feed(app, job_id, count)
    try:
        return stream(shop, job_id)
    finally:
        thread.join(30)


def test_a_running_job_streams_live_lines_then_status_then_done(app, shop):
    job_id = make_job("running", 2)
    events = stream_while_fed(app, shop, job_id, 5)
    lines = [e["data"]["line"] for e in events if e.get("event") == "line"]
    assert lines == ["line 1", "line 2", "live 1", "live 2", "live 3", "live 4", "live 5"]
    assert [e["id"] for e in events if e.get("event") == "line"] == [str(n) for n in range(1, 8)]
    statuses = [e["data"]["status"] for e in events if e.get("event") == "status"]
    assert statuses == ["running", "succeeded"]
    assert events[-1]["event"] == "done" and events[-1]["data"]["last"] == 7


def test_without_redis_the_stream_replays_the_record_and_ends_for_a_later_reconnect(app, shop, tmp_path):
    # The stream reads Redis only after its open: without Redis it sends what the database
    # holds, asks for a slower reconnect and ends (no `done`: the job runs); the reconnect
    # replays the rest from the database and ends with `done` once the job has ended.
    job_id = make_job("running", 1)
    app.config["REDIS_URL"] = f"unix://{tmp_path}/no-redis.sock"
    app.extensions.pop("relapp.redis", None)
    events = stream(shop, job_id)
    assert [e["data"]["line"] for e in events if e.get("event") == "line"] == ["line 1"]
    assert events[-1] == {"retry": "10000"} and not [e for e in events if e.get("event") == "done"]
    feed(app, job_id, 3, pause=0).join(30)
    again = stream(shop, job_id, **{"Last-Event-ID": "1"})
    assert [e["data"]["line"] for e in again if e.get("event") == "line"] == [
        "live 1", "live 2", "live 3"]
    assert again[-1]["event"] == "done" and again[-1]["data"]["last"] == 4


def test_a_stream_ends_after_its_time_limit_so_the_client_reconnects(app, shop):
    app.config["RELAPP_SSE_MAX_SECONDS"] = 1
    job_id = make_job("running", 2)
    events = stream(shop, job_id)
    assert [e["id"] for e in events if e.get("event") == "line"] == ["1", "2"]
    assert all(e.get("event") != "done" for e in events)


def test_the_page_stream_needs_a_session_and_the_api_stream_a_token(shop):
    job_id = make_job("succeeded", 1)
    assert shop.client.get(f"/api/v1/jobs/{job_id}/stream").status_code == 401
    page = shop.client.get(f"/jobs/{job_id}/stream")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    login(shop.client, "vic")
    body = shop.client.get(f"/jobs/{job_id}/stream")
    assert body.status_code == 200
    assert parse(body.get_data(as_text=True))[-1]["event"] == "done"
    missing = shop.client.get("/api/v1/jobs/999/stream",
                              headers={"Authorization": f"Bearer {shop.tokens['vic']}"})
    assert missing.status_code == 404


def open_stream(shop, job_id: int, **headers: str) -> Any:
    response = shop.client.get(f"/api/v1/jobs/{job_id}/stream", buffered=False,
                               headers={"Authorization": f"Bearer {shop.tokens['vic']}", **headers})
    assert response.status_code == 200
    return iter(response.response)


def read_until(chunks: Any, wanted: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events.extend(parse(chunk.decode() if isinstance(chunk, bytes) else chunk))
        if any(wanted(e) for e in events):
            break
    return events


def test_a_status_committed_anywhere_ends_the_stream_without_reading_the_database(app, shop):
    # No explicit publish: the commit listener puts the job's new status into its Redis stream.
    app.config["RELAPP_SSE_MAX_SECONDS"] = 60
    job_id = make_job("running", 1)
    chunks = open_stream(shop, job_id)
    read_until(chunks, lambda e: e.get("event") == "status")
    db.session.execute(update(Job).where(Job.id == job_id).values(status="failed", error="boom"))
    db.session.commit()
    events = read_until(chunks, lambda e: e.get("event") == "done")
    assert events[-1]["event"] == "done"
    assert events[-1]["data"] == {"status": "failed", "error": "boom", "last": 1}


def test_a_line_missing_from_redis_ends_the_stream_and_the_reconnect_replays_it(app, shop):
    app.config["RELAPP_SSE_MAX_SECONDS"] = 60
    job_id = make_job("running", 2)
    chunks = open_stream(shop, job_id)
    read_until(chunks, lambda e: e.get("event") == "status")
    # Line 3 reaches the database only (its publish was lost); line 4 reaches both.
    db.session.execute(JobLogLine.__table__.insert().values(job_id=job_id, seq=3, at=utcnow(),
                                                            line="line 3"))
    db.session.commit()
    joblog = JobLog(job_id)
    db.session.commit()
    joblog.write("line 4")
    rest = read_until(chunks, lambda _e: False)  # the stream ends by itself, without done
    assert not [e for e in rest if e.get("event") in ("line", "done")]
    app.config["RELAPP_SSE_MAX_SECONDS"] = 1  # the job runs on: the replay ends at its limit
    replay = stream(shop, job_id, **{"Last-Event-ID": "2"})
    assert [e["data"]["line"] for e in replay if e.get("event") == "line"] == ["line 3", "line 4"]
