"""GET /events: hello first, each change as it is rung, resume after Last-Event-ID, resync for an
id Redis no longer keeps, the session checked first, a clean end when Redis goes away."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import RedisError

from relapp.embedded import executable
from relapp.extensions import get_redis
from relapp.services import live
from tests.conftest import login, signed_in
from tests.deploys.test_sse import parse


class Events:
    """The real endpoint, read chunk by chunk as the client gets them."""

    def __init__(self, client: Any, **headers: str) -> None:
        self.response = client.get("/events", buffered=False, headers=headers)
        assert self.response.status_code == 200
        assert self.response.mimetype == "text/event-stream"
        self.chunks = iter(self.response.response)
        self.events: list[dict[str, Any]] = []

    def until(self, wanted: Any) -> list[dict[str, Any]]:
        for chunk in self.chunks:
            self.events.extend(parse(chunk.decode() if isinstance(chunk, bytes) else chunk))
            if any(wanted(e) for e in self.events):
                break
        return self.events

    def rest(self) -> list[dict[str, Any]]:
        return self.until(lambda _e: False)


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


@pytest.fixture
def client(app: Any, rows: Any) -> Any:
    app.config["RELAPP_SSE_MAX_SECONDS"] = 2
    return signed_in(app, "vic")


def test_a_change_rung_elsewhere_arrives_after_hello(client):
    stream = Events(client)
    events = stream.until(lambda e: e.get("event") == "hello")
    assert events[0] == {"retry": "2000"}
    last = events[1]["data"]["last"]
    live.notify("project:1", "release:2")
    events = stream.until(lambda e: e.get("event") == "change")
    change = named(events, "change")[0]
    assert change["data"] == {"topics": ["project:1", "release:2"]}
    assert change["id"] > last and change["id"] == get_redis().xrevrange(live.live_key(), count=1)[0][0].decode()
    assert not named(stream.rest(), "resync")  # it ends after its time limit, without a resync


def test_last_event_id_resumes_after_the_last_change_seen(client):
    for topic in ("project:1", "project:2", "project:3"):
        live.notify(topic)
    ids = [entry_id.decode() for entry_id, _ in get_redis().xrange(live.live_key())][-3:]
    events = Events(client, **{"Last-Event-ID": ids[0]}).rest()
    assert [(e["id"], e["data"]["topics"]) for e in named(events, "change")] == [
        (ids[1], ["project:2"]), (ids[2], ["project:3"])]
    assert not named(events, "resync")
    again = parse(client.get(f"/events?after={ids[1]}").get_data(as_text=True))
    assert [e["data"]["topics"] for e in named(again, "change")] == [["project:3"]]


def test_an_id_redis_no_longer_keeps_gets_a_resync_first(client):
    for n in range(5):
        live.notify(f"project:{n}")
    redis, key = get_redis(), live.live_key()
    first = redis.xrange(key, count=1)[0][0].decode()
    redis.xtrim(key, maxlen=2, approximate=False)
    events = Events(client, **{"Last-Event-ID": first}).rest()
    assert [e.get("event") for e in events[1:3]] == ["hello", "resync"]
    assert not named(events, "change")  # the page refreshes everything; nothing replayed
    garbage = parse(client.get("/events", headers={"Last-Event-ID": "not-an-id"}).get_data(as_text=True))
    assert named(garbage, "resync")


def test_the_doorbell_needs_a_session(app, rows):
    anonymous = app.test_client()
    page = anonymous.get("/events")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    script = anonymous.get("/events", headers={"Accept": "text/event-stream"})
    assert script.status_code == 401 and script.mimetype == "application/problem+json"
    assert login(anonymous, "vic").status_code == 302
    app.config["RELAPP_SSE_MAX_SECONDS"] = 0.5
    assert anonymous.get("/events").status_code == 200


def test_without_redis_the_stream_ends_cleanly(app, client, tmp_path, caplog):
    app.config["REDIS_URL"] = f"unix://{tmp_path}/no-redis.sock"
    app.extensions.pop("relapp.redis", None)
    with caplog.at_level(logging.WARNING):
        answer = client.get("/events")
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "retry: 2000\n\n"
    assert "live stream ended: Redis unavailable" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, to be killed mid-stream."""
    sock = tmp_path / "own-redis.sock"
    proc = subprocess.Popen([executable(), "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        try:
            if Redis(unix_socket_path=str(sock)).ping():
                break
        except RedisError:
            time.sleep(0.05)
    try:
        yield f"unix://{sock}", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_redis_that_dies_mid_stream_ends_it_cleanly(app, client, own_redis, caplog):
    url, proc = own_redis
    app.config["REDIS_URL"] = url
    app.config["RELAPP_SSE_MAX_SECONDS"] = 30
    app.extensions.pop("relapp.redis", None)
    stream = Events(client)
    stream.until(lambda e: e.get("event") == "hello")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with caplog.at_level(logging.WARNING):
        rest = stream.rest()  # ends instead of waiting out its 30 s
    assert not named(rest, "change")
    assert "live stream ended: Redis unavailable" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
