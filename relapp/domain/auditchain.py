"""The audit hash chain: each event's hash covers its fields and the hash of the event before it.

A pure function of stored values, so `audit verify` (and the migration that chained the events
recorded before the chain existed) recompute exactly what was written. The event's id is not
part of the hash (PostgreSQL assigns it at insert); order is proven by the links instead:
deleting, inserting or swapping rows breaks the `prev_hash` of the row after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
FIELDS = ("at", "actor_id", "actor", "action", "project_id", "target", "before", "after", "detail")


def _moment(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the previous hash and the event's fields as canonical JSON."""
    body = {name: event.get(name) for name in FIELDS}
    body["at"] = _moment(body["at"])
    canonical = json.dumps([prev_hash, body], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
