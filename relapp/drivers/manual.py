"""Manual driver: the deploy is done elsewhere by a person, who confirms it in relapp."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from relapp.drivers.base import (
    DeployContext,
    DriverConfigError,
    DriverResult,
    Outcome,
    render,
)


class ManualDriver:
    """Logs the instructions for a person and leaves the deployment waiting for them."""

    SETTINGS = ("instructions",)

    def __init__(self, instructions: str = "") -> None:
        """Create a manual driver with optional instructions ({tag}, {version}… are filled in)."""
        self.instructions = instructions

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ManualDriver:
        """Build the driver from TOML settings (keys checked by build_driver), raising
        DriverConfigError naming a bad value."""
        instructions = settings.get("instructions", "")
        if not isinstance(instructions, str):
            raise DriverConfigError("Setting 'instructions' of the manual driver must be text.")
        return cls(instructions)

    def run(
        self, ctx: DeployContext, log: Callable[[str], None], should_stop: Callable[[], bool]
    ) -> DriverResult:
        """Log the instructions and return WAITING until someone marks the deploy done or failed."""
        log(f"Manual deploy of {ctx.tag} ({ctx.version}) to {ctx.environment}.")
        # Names in braces that are not template fields stay literal: instructions are free text.
        for line in render(self.instructions, ctx.fields()).splitlines():
            log(line.rstrip())
        return DriverResult(
            Outcome.WAITING,
            "Waiting for someone to mark this deploy done or failed in relapp.",
        )
