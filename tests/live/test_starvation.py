"""Open live streams never starve page requests: 60 signed-in streams (the doorbell and job logs)
held open against `make run`'s stack and against the production start, while sign-in and pages
still answer 200 and every stream has received its first bytes. Counts only, no timing: the
load suite (bench/load.py) measures the times.
"""

from __future__ import annotations

import re
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from relapp.extensions import db
from relapp.models import Job, utcnow
from relapp.services.accounts import create_user
from tests.conftest import production_server

STREAMS = 60
FIRST_BYTES_SECONDS = 120.0  # a bound for a stuck server, not a measure
# One user agent for the form and the streams: sessions are bound to it ("strong" protection).
AGENT = "relapp-live-test"


def sign_in(url: str, username: str, password: str) -> tuple[int, str]:
    """Sign in through the real form: (status of the POST, the session cookie header)."""
    with httpx.Client(base_url=url, timeout=60, headers={"User-Agent": AGENT}) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        answer = client.post("/login", data={"username": username, "password": password,
                                             "csrf_token": token})
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return answer.status_code, cookie


def open_stream(port: int, path: str, cookie: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=FIRST_BYTES_SECONDS)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                 f"User-Agent: {AGENT}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    return sock


def first_bytes(socks: list[socket.socket]) -> dict[socket.socket, bytes]:
    """What each stream sent until its first event (`retry:`), read as they come."""
    got = {sock: b"" for sock in socks}
    waiting = set(socks)
    while waiting:
        ready, _, _ = select.select(list(waiting), [], [], FIRST_BYTES_SECONDS)
        if not ready:
            break
        for sock in ready:
            chunk = sock.recv(65536)
            got[sock] += chunk
            if not chunk or b"retry:" in got[sock]:
                waiting.discard(sock)
    return got


def hold_streams_and_browse(url: str, port: int, username: str, password: str,
                            job_id: int) -> None:
    status, cookie = sign_in(url, username, password)
    assert status == 302
    paths = ["/events" if n % 2 else f"/jobs/{job_id}/stream" for n in range(STREAMS)]
    socks = [open_stream(port, path, cookie) for path in paths]
    try:
        # While all 60 are open: a new sign-in and page requests are answered.
        again, other = sign_in(url, username, password)
        assert again == 302
        with httpx.Client(base_url=url, timeout=60, headers={"Cookie": other, "User-Agent": AGENT}) as client:
            for page in ("/", "/environments", "/"):
                answer = client.get(page)
                assert answer.status_code == 200, (page, answer.status_code)
        got = first_bytes(socks)
        started = [data for data in got.values()
                   if data.startswith(b"HTTP/1.1 200") and b"text/event-stream" in data
                   and b"retry: 2000" in data]
        assert len(started) == STREAMS, [data[:200] for data in got.values() if data not in started][:3]
        # Every stream is still open (none ended to make room).
        assert all(sock.fileno() >= 0 for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def running_job(database_url: str) -> int:
    """A deploy job row that stays running (no deployment: nothing ends it) so its stream stays open."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return int(conn.execute(Job.__table__.insert().values(
                kind="deploy", status="running", payload={}, attempt=1, created_at=utcnow(),
                started_at=utcnow()).returning(Job.__table__.c.id)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.xdist_group("live-starvation")
def test_sixty_open_streams_do_not_starve_make_run(live_server):
    url = live_server["url"]
    job_id = running_job(f"sqlite:///{live_server['instance'] / 'relapp.sqlite3'}")
    hold_streams_and_browse(url, int(url.rsplit(":", 1)[1]), "admin", "demo", job_id)


@pytest.fixture
def production(backend: dict[str, str], app: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The production start (`gunicorn -c python:relapp.gunicorn_conf --workers 2`)."""
    with app.app_context():
        create_user("vic", "pass", "viewer", display_name="Vic")
        job = Job(kind="deploy", status="running", payload={}, attempt=1, started_at=utcnow())
        db.session.add(job)
        db.session.commit()
        job_id = job.id
        db.session.remove()
    with production_server(backend, tmp_path, workers=2,
                           RELAPP_QUEUE=app.config["RQ_QUEUE"]) as server:
        yield {**server, "job": job_id}


def test_sixty_open_streams_do_not_starve_the_production_start(production):
    hold_streams_and_browse(production["url"], production["port"], "vic", "pass", production["job"])
    assert "Traceback" not in production["log"].read_text()
