"""The errors services raise: a sentence a person can act on, and the HTTP status it maps to.

This module knows nothing of Flask: the web layer (`relapp.errors`) turns these into problem+json
answers and pages, the CLI into one line on stderr.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error a user can cause or fix, with its HTTP status and a sentence saying what to do."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.extra = extra


class NotFound(ServiceError):
    """What the request names does not exist."""

    status, code = 404, "not_found"


class Forbidden(ServiceError):
    """The user's role may not do this."""

    status, code = 403, "forbidden"


class Conflict(ServiceError):
    """The request clashes with the current state (a lock, a freeze, a tag that exists)."""

    status, code = 409, "conflict"


class Unavailable(ServiceError):
    """Something relapp needs is busy or down for now; the same request may work later."""

    status, code = 503, "unavailable"
