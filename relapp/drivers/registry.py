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
    _refuse_other_kinds_settings(settings, kind)
    check_keys(settings, kind, driver_class.SETTINGS)
    return driver_class.from_settings(settings)


def _refuse_other_kinds_settings(settings: Mapping[str, Any], kind: str) -> None:
    """A setting of another kind (allow_hosts on a command driver) gets a sentence of its own:
    it is not a typo but a setting that would do nothing here."""
    own = {"kind", *KINDS[kind].SETTINGS}
    for key in settings:
        owners = [other for other, cls in KINDS.items() if other != kind and key in cls.SETTINGS]
        if key in own or not owners:
            continue
        hint = (
            "; an internal version_url is allowed through RELAPP_ALLOW_HOSTS instead"
            if key == "allow_hosts"
            else ""
        )
        raise DriverConfigError(
            f"Setting {key!r} belongs to the {' and '.join(owners)} driver, not the {kind} "
            f"driver, whose settings are: {', '.join(sorted(own))}{hint}.",
            key=str(key),
        )
