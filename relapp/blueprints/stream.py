"""Live job logs as Server-Sent Events: a ping first, replay after Last-Event-ID, live lines and
status from the job's Redis stream, and a final `done`.

The database is read once, at open: the job exists and may be seen, the lines after
Last-Event-ID (its replay) and the job's and its deployment's state. From then on the stream
reads Redis only: the job's log stream carries its lines (`relapp.joblog`) and, published after
each commit by the live listener (`relapp.services.live`), its status and its deployment's
status. The newest Redis entry is noted before the database is read, so nothing falls between
the replay and the live feed; a line seen twice is dropped by its sequence number.

When the live feed cannot be trusted, the stream ENDS (without `done`) and the reconnect replays
from the database, which is the record: a line whose number skips one (a line that never reached
Redis, or two writers that published out of order), or Redis unavailable (at open: after the
replay, with a longer `retry`, so a Redis outage costs one database read per client and
10 seconds, not a poll). EventSource reconnects by itself after `retry` with Last-Event-ID;
API clients do as they do after the time limit.

Streams are finite: they end with `done` when the job ends, or after RELAPP_SSE_MAX_SECONDS.
Event ids are the log lines' sequence numbers, so a resume replays exactly the lines after the
last one seen. A `: keep-alive` comment follows 15 s of silence.

A deploy job follows its deployment: a webhook or manual deploy's job ends at the hand-off
(`status` succeeded) while the deployment waits for the CD system's report or a person; the
stream stays open, sends a `deployment` event on each change, carries the lines the report,
the mark-done or the reaper append, and ends with `done` only when the deployment has ended,
with the deployment's status (`job_status` says how the job itself ended). Those lines are
written just after the commit that ends the deployment: once the state has ended, the stream
reads what Redis still brings for a moment (until DRAIN_MS pass without an entry, DRAIN_ROUNDS
at most) before it says `done`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from flask_login import current_user
from redis.exceptions import RedisError

from ..embedded import EmbeddedRedisError
from ..errors import problem
from ..exceptions import ServiceError
from ..extensions import get_redis, login_manager
from ..joblog import LogLine, sse, stream_key
from ..services.jobs_read import ensure_job, log_after
from ..services.live import stream_open
from ..services.queue import FINISHED, StreamState, stream_state

bp = Blueprint("stream", __name__)

RETRY_MS = 2000
RETRY_WITHOUT_REDIS_MS = 10_000
BLOCK_MS = 5000
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing
DRAIN_MS = 250
DRAIN_ROUNDS = 8
REDIS_DOWN = (RedisError, OSError, EmbeddedRedisError)


def _after() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        raise ServiceError("Last-Event-ID (or ?after=) must be a log line number.",
                           code="invalid_field") from None


def _line_event(seq: int, at: str, line: str) -> str:
    return sse("line", {"seq": seq, "at": at, "line": line}, seq)


def _status_event(state: StreamState) -> str:
    return sse("status", {"status": state.status, "error": state.error})


def _deployment_event(state: StreamState) -> str:
    return sse("deployment", {"deployment": state.deployment_id, "status": state.deployment_status,
                              "message": state.deployment_message})


def _done_event(state: StreamState, seq: int) -> str:
    status, error = state.outcome
    data: dict[str, Any] = {"status": status, "error": error, "last": seq}
    if state.deployment_id is not None:
        data.update(deployment=state.deployment_id, job_status=state.status)
    return sse("done", data, seq)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _moves(old: str | None, new: Any) -> bool:
    """A status event changes the state unless it would bring an ended one back (an event
    published late, after a later state was committed)."""
    return isinstance(new, str) and new != old and not (old in FINISHED and new not in FINISHED)


class _Gap(Exception):
    """A line number skipped: the live feed lost a line; the reconnect replays the record."""


class Follower:
    """A job's live feed after the open: the Redis stream's entries turned into events."""

    def __init__(self, job_id: int, state: StreamState, seq: int, redis: Any, cursor: str) -> None:
        self.job_id, self.state, self.seq = job_id, state, seq
        self.redis, self.cursor = redis, cursor
        self.key = stream_key(job_id)

    def read(self, block_ms: int) -> tuple[list[str], bool]:
        """The events of the entries that came within `block_ms` (and whether any came)."""
        found = self.redis.xread({self.key: self.cursor}, count=500, block=max(1, block_ms))
        out: list[str] = []
        came = False
        for _key, entries in found or []:
            for entry_id, fields in entries:
                came = True
                self.cursor = _text(entry_id)
                raw = fields.get(b"data") or fields.get("data") or b"{}"
                out.extend(self._event(json.loads(raw)))
        return out, came

    def _event(self, event: dict[str, Any]) -> list[str]:
        kind, state = event.get("type"), self.state
        if kind == "line":
            seq = int(event.get("seq", 0))
            if seq <= self.seq:
                return []
            if seq > self.seq + 1:
                raise _Gap
            self.seq = seq
            return [_line_event(seq, str(event.get("at", "")), str(event.get("line", "")))]
        if kind == "status" and _moves(state.status, event.get("status")):
            self.state = replace(state, status=event["status"], error=event.get("error", state.error))
            return [_status_event(self.state)]
        if kind == "deployment":
            deployment = event.get("deployment")
            if state.deployment_id is not None and deployment != state.deployment_id:
                return []  # an older deployment of this job (there is one per job)
            status = event.get("status")
            message = event.get("message", state.deployment_message)
            if not (_moves(state.deployment_status, status) or
                    (status == state.deployment_status and message != state.deployment_message)):
                return []
            self.state = replace(state, deployment_id=deployment, deployment_status=status,
                                 deployment_message=message)
            return [_deployment_event(self.state)]
        return []


def events(job_id: int, after: int, *, max_seconds: float) -> Iterator[str]:
    """The event stream of one job (and of the deployment it runs), starting after line `after`:
    the database is read here, once; the returned generator reads Redis only."""
    deadline = time.monotonic() + max_seconds
    # Note the Redis stream's end before reading the database: a line stored after the replay
    # is then certainly after this point in Redis.
    redis: Any = None
    cursor = "0-0"
    try:
        redis = get_redis()
        newest = redis.xrevrange(stream_key(job_id), count=1)
        if newest:
            cursor = _text(newest[0][0])
    except REDIS_DOWN:
        redis = None
    replay = log_after(job_id, after)
    state = stream_state(job_id)  # both end their read at once
    return _events(job_id, after, replay, state, redis, cursor, deadline)


def _events(job_id: int, after: int, replay: list[LogLine], state: StreamState, redis: Any,
            cursor: str, deadline: float) -> Iterator[str]:
    with stream_open("job"):
        yield f"retry: {RETRY_MS}\n\n"
        yield sse("ping", {"job": job_id, "status": state.status})
        seq = after
        for row in replay:
            seq = row.seq
            yield _line_event(row.seq, row.at.isoformat(), row.line)
        yield _status_event(state)
        if state.deployment_id is not None:
            yield _deployment_event(state)
        if state.ended:
            yield _done_event(state, seq)
            return
        if redis is None:
            yield f"retry: {RETRY_WITHOUT_REDIS_MS}\n\n"
            return
        follower = Follower(job_id, state, seq, redis, cursor)
        quiet_since = time.monotonic()
        try:
            while not follower.state.ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                silent_left = KEEPALIVE - (time.monotonic() - quiet_since)
                out, came = follower.read(int(min(BLOCK_MS, left * 1000, max(0.001, silent_left) * 1000)))
                yield from out
                if came:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
            # Ended: the lines written just after the ending commit are on their way.
            for _round in range(DRAIN_ROUNDS):
                out, came = follower.read(DRAIN_MS)
                yield from out
                if not came:
                    break
            yield _done_event(follower.state, follower.seq)
        except _Gap:
            return  # the reconnect replays the missing lines from the database
        except REDIS_DOWN:
            yield f"retry: {RETRY_WITHOUT_REDIS_MS}\n\n"
            return


def _stream(job_id: int) -> Response:
    ensure_job(job_id)
    after = _after()
    max_seconds = float(current_app.config.get("RELAPP_SSE_MAX_SECONDS") or 300)
    response = Response(stream_with_context(events(job_id, after, max_seconds=max_seconds)),
                        mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response


@bp.get("/jobs/<int:job_id>/stream")
def job_stream(job_id: int) -> Any:
    """A job's log and status as SSE, for a signed-in person's browser."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return _stream(job_id)


@bp.get("/api/v1/jobs/<int:job_id>/stream")
def api_job_stream(job_id: int) -> Any:
    """A job's log and status as SSE, for API clients with a bearer token."""
    if not current_user.is_authenticated:
        response = problem(401, "Send a valid API token as 'Authorization: Bearer <token>'.",
                           code="unauthorized")
        response.headers["WWW-Authenticate"] = 'Bearer realm="relapp"'
        return response
    return _stream(job_id)
