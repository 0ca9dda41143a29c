"""Counting the SQL statements a block runs (deterministic, unlike timing): the pages' tests
compare the count with a small and a large history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from relapp.extensions import db


@contextmanager
def counting() -> Iterator[list[str]]:
    """The statements run on the app's engine inside the block, in order."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)
