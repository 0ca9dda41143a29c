"""Links that views add to a service's refusal, so the page or problem says where to go next."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import url_for

from ..exceptions import ServiceError


@contextmanager
def adoption_link(project: Any) -> Iterator[None]:
    """A refusal about the project's tags (`see="adoption"`) gains `adoption_url`, the page that
    explains them and proposes the rules that read them."""
    try:
        yield
    except ServiceError as exc:
        if exc.extra.pop("see", None) == "adoption":
            exc.extra["adoption_url"] = url_for("releases.adoption", project=project.key, _external=False)
        raise
