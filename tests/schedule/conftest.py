"""The train and drift tests call services directly (on the shared demo project)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _service_context(service_context: Any) -> None:
    """Service-level tests call services directly: each test that uses the app runs in its context."""
