"""The engine's tests (cut, hotfix, adoption, the API) use the shared demo project."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Demo, demo_project, git, work_queue  # noqa: F401 - re-exported


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
