"""Idempotency-Key for API POSTs: the first answer to a key is stored per user and replayed to a
retry of the same request; a key reused for a different request is refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..exceptions import ServiceError
from ..extensions import db
from ..models import IdempotencyKey

MAX_KEY = 200


@dataclass(frozen=True)
class Stored:
    """The first answer given to a key: its status and JSON body."""

    status: int
    body: Any


def check_key(key: str) -> None:
    """Refuse a key too long to store, with a sentence."""
    if len(key) > MAX_KEY:
        raise ServiceError(f"An Idempotency-Key is at most {MAX_KEY} characters.",
                           code="invalid_idempotency_key")


def recall(user_id: int, key: str, request_hash: str) -> Stored | None:
    """The stored answer to this user's key, None for a new key; 422 when the key was used for a
    different request."""
    stored = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id,
                                                            IdempotencyKey.key == key))
    if stored is None:
        return None
    if stored.request_hash != request_hash:
        raise ServiceError("This Idempotency-Key was used for a different request; use a new key.",
                           status=422, code="idempotency_key_reused")
    return Stored(stored.status, stored.body)


def remember(user_id: int, key: str, request_hash: str, status: int, body: Any) -> None:
    """Store the first answer to a key; a concurrent first answer that won the race is kept."""
    db.session.add(IdempotencyKey(user_id=user_id, key=key, request_hash=request_hash,
                                  status=status, body=body))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
