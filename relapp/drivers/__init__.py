"""Deploy drivers (command, webhook, manual) behind one small interface."""

from __future__ import annotations

from relapp.drivers.base import (
    DeployContext,
    Driver,
    DriverConfigError,
    DriverResult,
    Outcome,
    mask,
    secrets_of,
)
from relapp.drivers.netguard import BlockedTarget, check_url
from relapp.drivers.registry import KINDS, build_driver
from relapp.drivers.webhook import sign, verify

__all__ = [
    "KINDS",
    "BlockedTarget",
    "DeployContext",
    "Driver",
    "DriverConfigError",
    "DriverResult",
    "Outcome",
    "build_driver",
    "check_url",
    "mask",
    "secrets_of",
    "sign",
    "verify",
]
