"""The audit hash chain: each event's hash covers its fields and the hash of the event before it.

A pure function of stored values, so `audit verify` (and the migration that chained the events
recorded before the chain existed) recompute exactly what was written. The event's id is not
part of the hash (PostgreSQL assigns it at insert); order is proven by the links instead:
deleting, inserting or swapping rows breaks the `prev_hash` of the row after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


# -- verifying it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    """The first event the chain does not vouch for, and why."""

    event_id: int
    action: str
    at: datetime | str | None
    changed: bool  # True: its fields no longer give its hash; False: it does not follow the one before
    previous_id: int | None  # the event it should follow (None: the start of the chain)

    def sentence(self) -> str:
        if self.changed:
            return (f"Event {self.event_id} ({self.action}, {_shown(self.at)}) does not match its "
                    "hash: it was changed after it was recorded.")
        after = f"event {self.previous_id}" if self.previous_id is not None else "the start of the chain"
        return (f"Event {self.event_id} does not follow {after}: an event before it was removed "
                "or reordered.")


@dataclass(frozen=True)
class ChainReport:
    """What walking the chain found: how many events, the last hash, the first break if any."""

    count: int
    last_hash: str
    last_id: int | None
    broken: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def sentence(self) -> str:
        if self.broken is not None:
            return self.broken.sentence()
        if not self.count:
            return "The audit log is empty: there is no chain to verify."
        noun = "event" if self.count == 1 else "events"
        return f"The audit chain of {self.count} {noun} is intact."


def _shown(at: datetime | str | None) -> str:
    if isinstance(at, datetime):
        return f"{(at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return str(at or "no time")


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Walk stored events in id order (each a mapping with `id`, `prev_hash`, `hash` and FIELDS)
    and stop at the first broken link: an event whose `prev_hash` is not the hash of the event
    before it (one was removed, inserted or reordered), or whose fields no longer give its `hash`
    (it was edited). Reads the rows once, so a stream of millions fits in memory.

    The chain proves the log up to its last event; removing events from the end leaves a shorter
    chain that is still whole, which only a copy of the last hash kept elsewhere can reveal.
    """
    previous, previous_id, count = GENESIS, None, 0
    for row in rows:
        count += 1
        if row["prev_hash"] != previous:
            return ChainReport(count, previous, previous_id,
                               ChainBreak(row["id"], row["action"], row["at"], False, previous_id))
        if row["hash"] != event_hash(row["prev_hash"], row):
            return ChainReport(count, previous, previous_id,
                               ChainBreak(row["id"], row["action"], row["at"], True, previous_id))
        previous, previous_id = row["hash"], row["id"]
    return ChainReport(count, previous, previous_id, None)
