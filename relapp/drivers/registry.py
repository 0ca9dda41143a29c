"""The driver factory: the kinds relapp knows and the one function that builds a driver from its
settings. It imports the concrete drivers; they import only `base`, so nothing imports back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from relapp.drivers.base import Driver, DriverConfigError
from relapp.drivers.command import CommandDriver
from relapp.drivers.manual import ManualDriver
from relapp.drivers.webhook import WebhookDriver

KINDS: dict[str, Callable[[Mapping[str, Any]], Driver]] = {
    "command": CommandDriver.from_settings,
    "webhook": WebhookDriver.from_settings,
    "manual": ManualDriver.from_settings,
}


def build_driver(settings: Mapping[str, Any]) -> Driver:
    """Build a driver from its TOML settings ({"kind": "command"|"webhook"|"manual", ...})."""
    if not isinstance(settings, Mapping):
        raise DriverConfigError("Driver settings must be a table with a 'kind' key.")
    kind = settings.get("kind")
    factory = KINDS.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise DriverConfigError(
            f"Setting 'kind' must be one of 'command', 'webhook' or 'manual', not {kind!r}."
        )
    return factory(settings)
