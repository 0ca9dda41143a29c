"""Hostile input gets a 4xx, never a 500 nor a traceback in the log (issue 9, finding 8): ids and
query numbers beyond what the database's INTEGER columns hold, JSON nested 100,000 deep, bodies over the limit, and the request
lines and headers gunicorn itself refuses (answered in problem+json, against a real gunicorn)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Config
from relapp.extensions import db
from relapp.joblog import JobLog
from relapp.models import Job
from relapp.services.accounts import create_token, create_user
from relapp.services.projects import sync_settings
from relapp.settings import parse
from tests.conftest import production_server, signed_in

# relapp's ids are SQL INTEGER columns: 32 bits on PostgreSQL (64 on SQLite).
ID_MAX = 2**31 - 1
TOO_BIG = [str(2**31), str(2**63), str(10**30), "9" * 5000]
TOO_DEEP = "The JSON body is nested too deeply."
PROJECT = """
[[projects]]
key = "shop"
name = "Shop"
remote = "/srv/git/shop.git"

[[projects.environments]]
name = "qa"
"""


@pytest.fixture
def site(app_ctx: Any, caplog: pytest.LogCaptureFixture) -> Iterator[dict[str, Any]]:
    """A project, an admin with an API token, a signed-in viewer, a job; after the test, no
    error was logged (a 500 logs its traceback at ERROR)."""
    sync_settings(parse(PROJECT))
    create_user("ada", "pass", "admin")
    create_user("vic", "pass", "viewer")
    token = create_token("ada")[1]
    job = Job(kind="deploy", status="succeeded")
    db.session.add(job)
    db.session.commit()
    JobLog(job.id).write("step 1/1: done")
    caplog.set_level(logging.INFO)
    client = app_ctx.test_client()
    yield {"client": client, "headers": {"Authorization": f"Bearer {token}"}, "job": job.id,
           "web": signed_in(app_ctx, "vic")}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    return body


def _page(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


# -- ids in the path ----------------------------------------------------------------------------


def test_an_id_beyond_the_database_integer_matches_no_route(site):
    client, headers, web = site["client"], site["headers"], site["web"]
    for number in TOO_BIG:
        # The deployment status callback answers without sign-in: it was the open door.
        _problem(client.post(f"/api/v1/deployments/{number}/status", json={"status": "succeeded"}), 404)
        _problem(client.post(f"/api/v1/deployments/{number}/status", data=b"{}",
                             headers={"X-Relapp-Signature-256": "sha256=00"}), 404)
        for path in (f"/api/v1/deployments/{number}", f"/api/v1/jobs/{number}",
                     f"/api/v1/jobs/{number}/stream"):
            _problem(client.get(path, headers=headers), 404)
        _problem(client.post(f"/api/v1/deployments/{number}/cancel", json={}, headers=headers), 404)
        _page(web.get(f"/jobs/{number}"), 404)
        _page(web.post(f"/me/tokens/{number}/revoke"), 404)


def test_the_largest_id_reaches_the_database_and_is_not_found(site):
    client, headers = site["client"], site["headers"]
    number = ID_MAX
    body = _problem(client.get(f"/api/v1/deployments/{number}", headers=headers), 404)
    assert body["detail"] == f"There is no deployment {number}."
    _problem(client.get(f"/api/v1/jobs/{number}", headers=headers), 404)
    # Unsigned, and signed without a secret to check against: refused, with a sentence.
    _problem(client.post(f"/api/v1/deployments/{number}/status", json={"status": "succeeded"}), 401)
    _problem(client.post(f"/api/v1/deployments/{number}/status", data=b"{}",
                         headers={"X-Relapp-Signature-256": "sha256=00"}), 401)
    _page(site["web"].get(f"/jobs/{number}"), 404)


def test_every_int_route_is_bounded(app):
    """A route added with the stock `int` converter would let a 2^63 id reach the database."""
    from werkzeug.routing import IntegerConverter

    from relapp.blueprints.converters import BoundedIntConverter

    ints = [(rule.rule, converter) for rule in app.url_map.iter_rules()
            for converter in rule._converters.values() if isinstance(converter, IntegerConverter)]
    assert ints, "no <int:...> route found"
    for rule, converter in ints:
        assert isinstance(converter, BoundedIntConverter) and converter.max == ID_MAX, rule


# -- numbers in the query -----------------------------------------------------------------------


def test_a_query_number_out_of_range_is_a_400(site):
    client, headers = site["client"], site["headers"]
    for query, sentence in [
        ("after=2147483648", "out of range"),
        ("after=9223372036854775808", "out of range"),
        ("after=" + "9" * 5000, "out of range"),
        ("after=-1", "out of range"),
        ("after=ten", "must be a whole number"),
        ("after=1e3", "must be a whole number"),
        ("limit=100000000000000000000", "out of range"),
    ]:
        body = _problem(client.get(f"/api/v1/jobs/{site['job']}?{query}", headers=headers), 400)
        name = query.split("=")[0]
        assert f"The query parameter '{name}'" in body["detail"] and sentence in body["detail"], query
    for path in [
        "/api/v1/audit?before_id=2147483648",
        "/api/v1/audit?before_id=9223372036854775808",
        "/api/v1/audit?since_id=9223372036854775808",
        "/api/v1/audit?limit=-99999999999999999999",
        "/api/v1/projects/shop/releases?limit=18446744073709551616",
        "/api/v1/projects/shop/releases?limit=many",
    ]:
        body = _problem(client.get(path, headers=headers), 400)
        assert body["detail"].startswith("The query parameter '"), path


def test_the_largest_numbers_reach_the_database(site):
    client, headers = site["client"], site["headers"]
    job = f"/api/v1/jobs/{site['job']}"
    assert [ln["line"] for ln in client.get(f"{job}?after=0", headers=headers).get_json()["job"]["lines"]] \
        == ["step 1/1: done"]
    answer = client.get(f"{job}?after={ID_MAX}", headers=headers)
    assert answer.status_code == 200 and answer.get_json()["job"]["lines"] == []
    for query in (f"before_id={ID_MAX}", f"since_id={ID_MAX}"):
        answer = client.get(f"/api/v1/audit?{query}", headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert client.get(f"/api/v1/audit?since_id={ID_MAX}", headers=headers).get_json()["events"] == []
    # A page size above its maximum is brought down to it, as before.
    assert client.get("/api/v1/projects/shop/releases?limit=100000", headers=headers).status_code == 200


# -- JSON bodies ---------------------------------------------------------------------------------


def test_json_nested_100k_deep_is_a_400(site):
    client, headers = site["client"], {**site["headers"], "Content-Type": "application/json"}
    for deep in ("[" * 100_000 + "]" * 100_000,
                 '{"a":' * 100_000 + "1" + "}" * 100_000,
                 '{"reason": ' + "[" * 100_000):  # unclosed
        for path in ("/api/v1/projects/shop/environments/qa/lock", "/api/v1/deployments/1/cancel"):
            body = _problem(client.post(path, data=deep, headers=headers), 400)
            assert body["detail"] == TOO_DEEP
        body = _problem(client.post("/api/v1/projects/shop/environments/qa/lock", data=deep,
                                    headers={**headers, "Idempotency-Key": "deep-1"}), 400)
        assert body["detail"] == TOO_DEEP


def test_json_nested_just_below_the_parser_limit_is_a_400_too(site):
    client, headers = site["client"], {**site["headers"], "Content-Type": "application/json"}
    for depth in (200, 800):
        deep = '{"locked": ' + "[" * depth + "]" * depth + ', "reason": "x"}'
        answer = client.post("/api/v1/projects/shop/environments/qa/lock", data=deep, headers=headers)
        assert 400 <= answer.status_code < 500, answer.get_data(as_text=True)[:300]
        assert answer.mimetype == "application/problem+json"


# -- body size ----------------------------------------------------------------------------------


def test_bodies_are_limited_to_one_megabyte_by_default_and_configurable(site, app):
    assert Config({}).MAX_CONTENT_LENGTH == 1024 * 1024 == app.config["MAX_CONTENT_LENGTH"]
    assert Config({"RELAPP_MAX_BODY_BYTES": "4096"}).MAX_CONTENT_LENGTH == 4096
    with pytest.raises(ValueError, match="RELAPP_MAX_BODY_BYTES must be a number"):
        Config({"RELAPP_MAX_BODY_BYTES": "lots"})
    client, headers = site["client"], {**site["headers"], "Content-Type": "application/json"}
    big = json.dumps({"locked": True, "reason": "x" * (1024 * 1024)})
    body = _problem(client.post("/api/v1/projects/shop/environments/qa/lock", data=big,
                                headers=headers), 413)
    assert "larger than the 1,048,576 bytes" in body["detail"]
    page = _page(site["web"].post("/login", data={"username": "x" * (2 * 1024 * 1024)}), 413)
    assert "larger than the 1,048,576 bytes" in page

    app.config["MAX_CONTENT_LENGTH"] = 4096
    small = json.dumps({"locked": True, "reason": "deploys paused"})
    assert client.post("/api/v1/projects/shop/environments/qa/lock", data=small,
                       headers=headers).status_code == 200
    body = _problem(client.post("/api/v1/projects/shop/environments/qa/lock",
                                data=json.dumps({"locked": False, "reason": "y" * 5000}),
                                headers=headers), 413)
    assert "larger than the 4,096 bytes" in body["detail"]


# -- what gunicorn refuses itself ---------------------------------------------------------------


@pytest.fixture
def gunicorn(backend: dict[str, str], app: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The production start from the README (`gunicorn -c python:relapp.gunicorn_conf`)."""
    with production_server(backend, tmp_path, RELAPP_MAX_BODY_BYTES="4096") as server:
        yield server


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def test_gunicorn_refusals_are_problem_json(gunicorn):
    port = gunicorn["port"]
    cases = [
        (b"GET /api/v1/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "longer than the 4094 bytes"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers are too large"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n",
         431, "at most 100 headers"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "not valid HTTP"),
    ]
    for request, status, sentence in cases:
        got, headers, body = _raw(port, request)
        assert got == status, body
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["status"] == status and sentence in problem["detail"], problem
    # Past gunicorn, relapp's own limits answer in the same shape (RELAPP_MAX_BODY_BYTES=4096).
    big = b"{" + b" " * 8192 + b"}"
    got, headers, body = _raw(port, b"POST /api/v1/deployments/1/status HTTP/1.1\r\nHost: x\r\n"
                              b"X-Relapp-Signature-256: sha256=00\r\n"
                              b"Content-Type: application/json\r\nConnection: close\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(big) + big)
    assert got == 413 and headers["content-type"] == "application/problem+json", body
    assert "larger than the 4,096 bytes" in json.loads(body)["detail"]
    got, headers, body = _raw(port, b"POST /api/v1/deployments/%d/status HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\nContent-Length: 2\r\n\r\n{}" % 2**64)
    assert got == 404 and headers["content-type"] == "application/problem+json", body
    log = gunicorn["log"].read_text()
    assert "Traceback" not in log and "[ERROR]" not in log, log
