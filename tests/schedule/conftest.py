"""The demo project fixture, shared with the engine tests (a real repository and its bare remote)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import demo_project  # noqa: F401 - re-exported as a fixture


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
