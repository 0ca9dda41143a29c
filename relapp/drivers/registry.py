"""The driver factory: the kinds relapp knows and the one function that builds a driver from its
settings. It imports the concrete drivers; they import only `base`, so nothing imports back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relapp.drivers.base import Driver, DriverConfigError, check_keys
from relapp.drivers.command import CommandDriver
from relapp.drivers.manual import ManualDriver
from relapp.drivers.webhook import WebhookDriver

# Each kind's class names the settings it knows (SETTINGS) and builds itself (from_settings).
KINDS: dict[str, type[CommandDriver | WebhookDriver | ManualDriver]] = {
    "command": CommandDriver,
    "webhook": WebhookDriver,
    "manual": ManualDriver,
}


def build_driver(settings: Mapping[str, Any]) -> Driver:
    """Build a driver from its TOML settings ({"kind": "command"|"webhook"|"manual", ...})."""
    if not isinstance(settings, Mapping):
        raise DriverConfigError("Driver settings must be a table with a 'kind' key.")
    kind = settings.get("kind")
    driver_class = KINDS.get(kind) if isinstance(kind, str) else None
    if driver_class is None:
        raise DriverConfigError(
            f"Setting 'kind' must be one of 'command', 'webhook' or 'manual', not {kind!r}."
        )
    # Checked here, once for every kind: a typo must not silently drop a setting.
    check_keys(settings, kind, driver_class.SETTINGS)
    return driver_class.from_settings(settings)
