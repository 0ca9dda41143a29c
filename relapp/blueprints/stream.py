"""Live job logs as Server-Sent Events: a ping first, replay after Last-Event-ID, live lines from
the Redis stream (or database polling when Redis is away), status events, and a final `done`.

Streams are finite: they end with `done` when the job ends, or after RELAPP_SSE_MAX_SECONDS
(the browser then reconnects with Last-Event-ID and misses nothing). Event ids are the log
lines' sequence numbers, so a resume replays exactly the lines after the last one seen.

A deploy job follows its deployment: a webhook or manual deploy's job ends at the hand-off
(`status` succeeded) while the deployment waits for the CD system's report or a person; the
stream stays open, sends a `deployment` event on each change, carries the lines the report,
the mark-done or the reaper append, and ends with `done` only when the deployment has ended,
with the deployment's status (`job_status` says how the job itself ended).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from flask_login import current_user
from redis.exceptions import RedisError

from ..errors import problem
from ..exceptions import ServiceError
from ..extensions import get_redis, login_manager
from ..joblog import sse, stream_key
from ..services.jobs_read import ensure_job, log_after
from ..services.queue import StreamState, stream_state

bp = Blueprint("stream", __name__)

RETRY_MS = 2000
BLOCK_MS = 1000
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing


def _after() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        raise ServiceError("Last-Event-ID (or ?after=) must be a log line number.",
                           code="invalid_field") from None


def _line_event(seq: int, at: str, line: str) -> str:
    return sse("line", {"seq": seq, "at": at, "line": line}, seq)


def _deployment_event(state: StreamState) -> str:
    return sse("deployment", {"deployment": state.deployment_id, "status": state.deployment_status,
                              "message": state.deployment_message})


def _done_event(state: StreamState, seq: int) -> str:
    status, error = state.outcome
    data: dict[str, Any] = {"status": status, "error": error, "last": seq}
    if state.deployment_id is not None:
        data.update(deployment=state.deployment_id, job_status=state.status)
    return sse("done", data, seq)


def events(job_id: int, after: int, *, max_seconds: float) -> Iterator[str]:
    """The event stream of one job (and of the deployment it runs), starting after line `after`."""
    deadline = time.monotonic() + max_seconds
    state = stream_state(job_id)
    yield f"retry: {RETRY_MS}\n\n"
    yield sse("ping", {"job": job_id, "status": state.status})

    # Note the stream's end before reading the database: a line stored after the replay is
    # then certainly after this point in Redis, and duplicates are dropped by sequence number.
    redis: Any = None
    last_id = "0-0"
    try:
        redis = get_redis()
        newest = redis.xrevrange(stream_key(job_id), count=1)
        if newest:
            last_id = newest[0][0].decode() if isinstance(newest[0][0], bytes) else newest[0][0]
    except (RedisError, OSError):
        redis = None

    seq = after
    for row in log_after(job_id, seq):
        seq = row.seq
        yield _line_event(row.seq, row.at.isoformat(), row.line)
    state = stream_state(job_id)
    yield sse("status", {"status": state.status, "error": state.error})
    if state.deployment_id is not None:
        yield _deployment_event(state)
    last = state
    quiet_since = time.monotonic()

    while not state.ended and time.monotonic() < deadline:
        sent = False
        if redis is not None:
            try:
                found = redis.xread({stream_key(job_id): last_id}, count=500, block=BLOCK_MS)
            except (RedisError, OSError):
                redis, found = None, []  # fall back to polling the database
            for _key, entries in found or []:
                for entry_id, fields in entries:
                    last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    raw = fields.get(b"data") or fields.get("data") or b"{}"
                    event = json.loads(raw)
                    if event.get("type") != "line" or int(event.get("seq", 0)) <= seq:
                        continue
                    if int(event["seq"]) > seq + 1:
                        # A line never reached Redis: fill the gap from the record.
                        for row in log_after(job_id, seq):
                            seq = row.seq
                            yield _line_event(row.seq, row.at.isoformat(), row.line)
                    else:
                        seq = int(event["seq"])
                        yield _line_event(seq, str(event.get("at", "")), str(event.get("line", "")))
                    sent = True
        else:
            time.sleep(BLOCK_MS / 1000)
            for row in log_after(job_id, seq):
                seq = row.seq
                yield _line_event(row.seq, row.at.isoformat(), row.line)
                sent = True
        # The database is the record: the status always comes from it, so a status event lost
        # with Redis (or published by a process that could not reach it) still ends the stream.
        state = stream_state(job_id)
        if state.status != last.status:
            yield sse("status", {"status": state.status, "error": state.error})
            sent = True
        if (state.deployment_status, state.deployment_message) != (last.deployment_status,
                                                                    last.deployment_message):
            yield _deployment_event(state)
            sent = True
        last = state
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"

    if state.ended:
        # Lines written just before the end may not have come through Redis yet.
        for row in log_after(job_id, seq):
            seq = row.seq
            yield _line_event(row.seq, row.at.isoformat(), row.line)
        yield _done_event(state, seq)


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
