"""RQ job functions: they take ids, re-load rows, are idempotent, and write data, never HTML."""

from __future__ import annotations

from typing import Any


def ping(value: Any) -> dict[str, Any]:
    """A trivial job that proves the queue and a worker work: it echoes its argument."""
    import os

    return {"echo": value, "pid": os.getpid()}
