"""Operability endpoints: `/healthz` (the process answers), `/readyz` (the database and Redis
answer, the schema is at the migrations' head) and `/metrics` (Prometheus).

No sign-in, no CSRF (GET only), no rate limit: a load balancer or Prometheus polls them. They
are cheap: `/healthz` touches nothing; `/readyz` runs a `SELECT 1`, a PING and reads the schema
version. `/metrics` is not for the internet: without RELAPP_METRICS_TOKEN it answers only
requests from loopback that no proxy forwarded; with it, only `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import problem
from ..services import health, metrics

bp = Blueprint("health", __name__)

# Headers a reverse proxy adds: a request carrying one came from further away than it looks.
FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


@bp.get("/healthz")
def healthz() -> Response:
    """Alive: the process answers. Touches neither the database nor Redis."""
    response = jsonify(status="alive")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/readyz")
def readyz() -> Response:
    """Ready: database, Redis and migrations; a 503 problem+json naming what failed."""
    checks = health.readiness()
    states = {c.name: ("ok" if c.ok else c.detail) for c in checks}
    if all(c.ok for c in checks):
        response = jsonify(status="ready", checks=states)
    else:
        response = problem(503, health.not_ready_sentence(checks), code="not_ready", checks=states)
    response.headers["Cache-Control"] = "no-store"
    return response


def _from_loopback() -> bool:
    try:
        local = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False
    return local and not any(name in request.headers for name in FORWARDED)


@bp.get("/metrics")
def prometheus() -> Response:
    """The Prometheus text exposition, for loopback or the bearer of RELAPP_METRICS_TOKEN."""
    token = current_app.config.get("RELAPP_METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = problem(401, "Metrics need `Authorization: Bearer <RELAPP_METRICS_TOKEN>`.",
                               code="metrics_token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="relapp metrics"'
            return response
    elif not _from_loopback():
        return problem(403, "Metrics are served to loopback only; set RELAPP_METRICS_TOKEN to "
                            "scrape them from elsewhere.", code="metrics_loopback")
    response = Response(metrics.exposition(), mimetype=None, content_type=metrics.CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
