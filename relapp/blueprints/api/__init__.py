"""The JSON API under /api/v1: bearer tokens, problem+json errors, Idempotency-Key on POSTs.

Each area adds its routes in its own module (releases, deploys) and its paths to the OpenAPI
document (openapi.py) through `PATHS`; every JSON shape, request or response, is a pydantic model
in `schemas`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user
from pydantic import BaseModel

from ...auth import has_role
from ...domain.pipeline import Role
from ...errors import problem
from ...exceptions import ServiceError
from ...extensions import csrf
from ...services import idempotency
from .schemas import load

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer tokens, not cookies, authenticate the API, so there is no cross-site request to forge.
csrf.exempt(bp)

F = TypeVar("F", bound=Callable[..., Any])
B = TypeVar("B", bound=BaseModel)
# OpenAPI path items, filled by each API module at import.
PATHS: dict[str, dict[str, Any]] = {}


def api_auth(minimum: str = Role.VIEWER) -> Callable[[F], F]:
    """Require a valid bearer token whose user has at least `minimum` role."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                response = problem(401, "Send a valid API token as 'Authorization: Bearer <token>'. "
                                        "Make one with `flask --app relapp token create USER`.", code="unauthorized")
                response.headers["WWW-Authenticate"] = 'Bearer realm="relapp"'
                return response
            if not has_role(current_user, minimum):
                return problem(403, f"This needs the {minimum} role or higher; you are {current_user.role}.",
                               code="forbidden")
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def body() -> dict[str, Any]:
    """The request's JSON object, or a 400 ServiceError with a sentence."""
    data = request.get_json(silent=True)
    if data is None:
        raise ServiceError("Send a JSON object with Content-Type: application/json.", code="invalid_json")
    if not isinstance(data, dict):
        raise ServiceError("The request body must be a JSON object.", code="invalid_json")
    return data


def parse(model: type[B]) -> B:
    """The request's JSON object read as one of the request models in `schemas`, or a 400."""
    return load(model, body())


def idempotent(view: F) -> F:
    """Replay the first response to a POST carrying the same Idempotency-Key (per user); refuse a
    reused key with a different request."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return view(*args, **kwargs)
        idempotency.check_key(key)
        digest = hashlib.sha256(request.method.encode() + request.path.encode() + b"\0" + request.get_data()).hexdigest()
        stored = idempotency.recall(current_user.id, key, digest)
        if stored is not None:
            response = jsonify(stored.body)
            response.status_code = stored.status
            response.headers["Idempotent-Replayed"] = "true"
            return response
        response = _as_response(view(*args, **kwargs))
        if response.status_code < 500 and response.is_json:
            idempotency.remember(current_user.id, key, digest, response.status_code,
                                 json.loads(response.get_data()))
        return response

    return wrapped  # type: ignore[return-value]


def _as_response(result: Any) -> Response:
    from flask import make_response

    return make_response(result)


def register_api(app: Any) -> None:
    """Import the API modules (they attach routes to `bp`) and register the blueprint."""
    from . import deploys, openapi, releases  # noqa: F401

    app.register_blueprint(bp)
