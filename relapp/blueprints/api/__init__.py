"""The JSON API under /api/v1: bearer tokens, problem+json errors, Idempotency-Key on POSTs.

Each area adds its routes in its own module (releases, deploys) and its paths to the OpenAPI
document (openapi.py) through `PATHS`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ...auth import has_role
from ...errors import problem
from ...exceptions import ServiceError
from ...extensions import csrf, db
from ...models import IdempotencyKey

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer tokens, not cookies, authenticate the API, so there is no cross-site request to forge.
csrf.exempt(bp)

F = TypeVar("F", bound=Callable[..., Any])
# OpenAPI path items, filled by each API module at import.
PATHS: dict[str, dict[str, Any]] = {}


def api_auth(minimum: str = "viewer") -> Callable[[F], F]:
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


def field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = False,
          default: Any = None, max_len: int = 2000) -> Any:
    """One typed field of a JSON body, with a 400 sentence naming it when it is wrong."""
    if name not in data or data[name] is None:
        if required:
            raise ServiceError(f"The field '{name}' is required.", code="missing_field")
        return default
    value = data[name]
    if isinstance(value, bool) and kind is not bool and (kind is int or (isinstance(kind, tuple) and bool not in kind)):
        raise ServiceError(f"The field '{name}' has the wrong type.", code="invalid_field")
    if not isinstance(value, kind):
        raise ServiceError(f"The field '{name}' has the wrong type.", code="invalid_field")
    if isinstance(value, str) and len(value) > max_len:
        raise ServiceError(f"The field '{name}' is longer than {max_len} characters.", code="invalid_field")
    return value


def idempotent(view: F) -> F:
    """Replay the first response to a POST carrying the same Idempotency-Key (per user); refuse a
    reused key with a different request."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return view(*args, **kwargs)
        if len(key) > 200:
            return problem(400, "An Idempotency-Key is at most 200 characters.", code="invalid_idempotency_key")
        digest = hashlib.sha256(request.method.encode() + request.path.encode() + b"\0" + request.get_data()).hexdigest()
        stored = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == current_user.id,
                                                                IdempotencyKey.key == key))
        if stored is not None:
            if stored.request_hash != digest:
                return problem(422, "This Idempotency-Key was used for a different request; use a new key.",
                               code="idempotency_key_reused")
            response = jsonify(stored.body)
            response.status_code = stored.status
            response.headers["Idempotent-Replayed"] = "true"
            return response
        response = _as_response(view(*args, **kwargs))
        if response.status_code < 500 and response.is_json:
            db.session.add(IdempotencyKey(user_id=current_user.id, key=key, request_hash=digest,
                                          status=response.status_code, body=json.loads(response.get_data())))
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
        return response

    return wrapped  # type: ignore[return-value]


def _as_response(result: Any) -> Response:
    from flask import make_response

    return make_response(result)


def register_api(app: Any) -> None:
    """Import the API modules (they attach routes to `bp`) and register the blueprint."""
    from . import deploys, openapi, releases  # noqa: F401

    app.register_blueprint(bp)
