"""The demo project fixture, shared with the engine tests (a real repository and its bare remote)."""

from __future__ import annotations

from tests.engine.conftest import demo_project  # noqa: F401 - re-exported as a fixture
