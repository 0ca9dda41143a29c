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
    status = 404
    code = "not_found"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"
