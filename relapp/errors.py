"""Error answers: problem+json under /api, a page (or an htmx fragment) elsewhere; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from htmx_flask import make_response as htmx_response
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .blueprints import converters
from .exceptions import ServiceError
from .extensions import db

log = logging.getLogger(__name__)


TITLES = {
    400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
    405: "Method not allowed", 409: "Refused", 413: "Too large", 414: "Address too long",
    422: "Cannot process", 429: "Too many requests", 431: "Headers too large",
    500: "Internal error", 503: "Unavailable",
}


def problem(status: int, detail: str, *, code: str | None = None, **extra: Any) -> Response:
    """An RFC 9457 problem+json response."""
    body = {"type": f"about:blank#{code}" if code else "about:blank",
            "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/slack/")


def error_response(status: int, detail: str, *, code: str | None = None, refresh: bool = False,
                   **extra: Any) -> Any:
    """The right shape of error for the caller: problem+json, an htmx fragment, or a page.
    `refresh` asks htmx to reload the whole page (a stale form)."""
    if wants_json():
        return problem(status, detail, code=code, **extra)
    # A refusal about the project's tags links the page that explains them.
    see = extra.get("adoption_url")
    if request.htmx:
        html = render_template("_error.html", status=status, detail=detail, title=TITLES.get(status), see=see)
        # htmx does not swap 4xx answers by default; show the sentence in the page's alert area.
        return htmx_response(html, status, retarget="#alerts", reswap="innerHTML", refresh=refresh)
    return render_template("error.html", status=status, detail=detail,
                           title=TITLES.get(status, "Error"), see=see), status


def too_large_detail(limit: int | None) -> str:
    """The sentence of a 413: how large a body may be."""
    if not limit:
        return "The request body is too large."
    return (f"The request body is larger than the {limit:,} bytes this server accepts "
            "(RELAPP_MAX_BODY_BYTES); nothing was changed.")


def init_app(app: Flask) -> None:
    """Register the handlers, and the bounds that turn hostile input into a 4xx before it
    reaches a view (relapp.blueprints.converters: bounded `<int:...>` ids, deeply nested
    JSON). Called before the blueprints are registered: a route takes its converter when added."""
    converters.init_app(app)

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> Any:
        db.session.rollback()
        return error_response(exc.status, exc.detail, code=exc.code, **exc.extra)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        db.session.rollback()
        detail = ("The form was missing its security token or it expired. Reload the page and try "
                  "again; nothing was changed.")
        return error_response(400, detail, code="csrf", refresh=True)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        detail = exc.description or TITLES.get(status, "Error")
        if status == 404 and not exc.description:
            detail = "There is nothing at this address."
        code = None
        if isinstance(exc, converters.JSONTooDeep):
            code = "invalid_json"
        elif status == 413:
            detail, code = too_large_detail(app.config.get("MAX_CONTENT_LENGTH")), "too_large"
        response = error_response(status, detail, code=code)
        if status == 401 and wants_json():
            response.headers["WWW-Authenticate"] = 'Bearer realm="relapp"'
        return response

    def _as_signed_out() -> None:
        # The database cannot be read: the error page must not try to load the user for its
        # navigation (Flask-Login keeps the loaded user in g._login_user).
        g._login_user = app.login_manager.anonymous_user()  # type: ignore[attr-defined]

    @app.errorhandler(OperationalError)
    def database_down(exc: OperationalError) -> Any:
        log.error("database error: %s", exc.__class__.__name__)
        db.session.rollback()
        _as_signed_out()
        return error_response(503, "The database cannot be reached right now; nothing was "
                                   "changed. Try again in a moment.", code="database_unavailable")

    @app.errorhandler(PoolTimeout)
    def pool_exhausted(exc: PoolTimeout) -> Any:
        # Every database connection of this process stayed busy for the pool's whole timeout:
        # an overload, not a bug. Say so and when to come back, instead of a 500.
        log.warning("database connection pool exhausted: %s", exc)
        db.session.rollback()
        _as_signed_out()
        response = make_response(error_response(
            503, "The server is busy right now; nothing was changed. Try again in a few seconds.",
            code="busy"))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError) -> Any:
        log.error("redis error: %s", exc.__class__.__name__)
        return error_response(503, "The job queue (Redis) cannot be reached right now. Try again "
                                   "in a moment.", code="redis_unavailable")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unexpected error")
        db.session.rollback()
        return error_response(500, "Something went wrong on our side; nothing was changed. The "
                                   "error was logged.", code="internal")
