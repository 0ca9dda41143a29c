"""Logs: in production mode one JSON object per line, with the request's id (the caller's valid
X-Request-ID or a new one, echoed in the response) or, in a worker's job, the RQ job id and the
job row's id. Development stays plain text (tests/ops/test_startup.py reads a worker's line)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from typing import Any

import pytest

from relapp.extensions import db, get_queue
from relapp.logging_setup import json_handler
from relapp.models import Job
from tests.conftest import ROOT
from tests.ops.conftest import production_env


def _log_in_request(app: Any, headers: dict[str, str]) -> tuple[dict[str, Any], str]:
    """A line logged during a request, as JSON, and the id the response would carry."""
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger("relapp.tests.ops")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with app.test_request_context("/healthz", headers=headers):
            app.preprocess_request()
            logger.info("checked %s", "something", extra={"detail": 7})
            response = app.process_response(app.make_response("ok"))
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0]), response.headers["X-Request-ID"]


def test_a_request_line_is_json_with_the_callers_request_id(app: Any) -> None:
    line, echoed = _log_in_request(app, {"X-Request-ID": "edge-7f3a.42"})
    assert echoed == "edge-7f3a.42"
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["level"] == "INFO" and line["logger"] == "relapp.tests.ops"
    assert line["message"] == "checked something" and line["detail"] == 7
    assert line["request_id"] == "edge-7f3a.42"
    assert line["time"].endswith("+00:00")


@pytest.mark.parametrize("given", ["", "has spaces", "x" * 129, "-leading-dash", "<script>"])
def test_an_invalid_request_id_is_replaced(app: Any, given: str) -> None:
    line, echoed = _log_in_request(app, {"X-Request-ID": given} if given else {})
    assert echoed != given and len(echoed) == 32 and echoed.isalnum()
    assert line["request_id"] == echoed


def test_a_worker_line_in_production_carries_the_job_ids(app_ctx: Any, worker_env: dict[str, str]) -> None:
    job = Job(kind="no_such_kind", status="queued")  # its handler is missing: the job crashes
    db.session.add(job)
    db.session.commit()
    get_queue("git").enqueue("relapp.jobs.run", job.id, job_id=job.rq_id)
    result = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst", "--queues", "git"],
                            cwd=ROOT, env=production_env(worker_env), capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]  # all JSON
    crashed = [line for line in lines if line["message"] == f"job {job.id} crashed"]
    assert len(crashed) == 1, result.stderr
    assert crashed[0]["level"] == "ERROR" and crashed[0]["logger"] == "relapp.jobs"
    assert crashed[0]["job_id"] == job.id and crashed[0]["rq_job_id"] == job.rq_id
    assert "KeyError" in crashed[0]["exc_info"]
    db.session.rollback()  # a fresh read: SQLite's snapshot would still show it queued
    assert db.session.get(Job, job.id).status == "failed"
