"""Logs: plain text in development; in production mode (RELAPP_ENV=production) one JSON object per
line on stderr, with `time`, `level`, `logger`, `message`, `pid`, and what the line belongs to:
`request_id` in a web request, `rq_job_id` and `job_id` (the job row) in a worker's job.

Every request has an id: the caller's `X-Request-ID` when it is a plain token of at most 128
characters, else a new one; it is echoed in the response's `X-Request-ID`, which gunicorn's access
log line carries too (relapp.gunicorn_conf), so a page's access line and its app lines join.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

HEADER = "X-Request-ID"
VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# The job function whose first argument is the job row's id (relapp.jobs.run).
JOB_RUNNER = "relapp.jobs.run"


def request_id() -> str | None:
    """The current request's id, outside a request None."""
    if not has_request_context():
        return None
    rid: str | None = g.get("request_id")
    return rid


def _rq_job() -> tuple[str | None, int | None]:
    """(RQ job id, job row id) of the job this process runs now, if any."""
    from rq import get_current_job

    try:
        job = get_current_job()
    except Exception:  # noqa: BLE001 - a log line never fails for want of context
        return None, None
    if job is None:
        return None, None
    row = None
    try:
        if job.func_name == JOB_RUNNER and job.args and isinstance(job.args[0], int):
            row = job.args[0]
    except Exception:  # noqa: BLE001 - args that cannot be read: the RQ id alone
        row = None
    return job.id, row


class ContextFilter(logging.Filter):
    """Adds request_id, rq_job_id and job_id to each record that belongs to one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            rid = request_id()
            if rid is not None:
                record.request_id = rid
        if getattr(record, "rq_job_id", None) is None:
            rq_id, row = _rq_job()
            if rq_id is not None:
                record.rq_job_id = rq_id
                if row is not None:
                    record.job_id = row
        return True


class JsonLines(JsonFormatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, pid, then the
    record's extra fields (request_id, job ids, exc_info)."""

    def __init__(self) -> None:
        super().__init__(["message"])

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)
        log_data["pid"] = record.process


def json_handler(stream: Any = None) -> logging.Handler:
    """A handler that writes JSON lines with the request and job context."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines())
    handler.addFilter(ContextFilter())
    handler._relapp_json = True  # type: ignore[attr-defined]
    return handler


def configure_json(level: int = logging.INFO) -> None:
    """Production: the root logger writes JSON lines to stderr, once; plain handlers that
    logging.basicConfig put there (worker.py) are replaced, others (pytest's) are kept."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_relapp_json", False) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(level)


def init_app(app: Flask) -> None:
    """Request ids for every request; JSON logs in production mode (not under TESTING, where
    the test runner owns logging)."""
    if app.config.get("RELAPP_PRODUCTION") and not app.config.get("TESTING"):
        configure_json()

    @app.before_request
    def _request_id() -> None:
        given = request.headers.get(HEADER, "")
        g.request_id = given if VALID_ID.fullmatch(given) else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(response: Any) -> Any:
        rid = g.get("request_id")
        if rid:
            response.headers[HEADER] = rid
        return response
