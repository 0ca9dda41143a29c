"""The deploy driver interface: the context a driver gets, the result it returns, and the helpers
every driver shares (templates, masking, settings checks). The factory is in `registry`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

# The fields a template may name; anything else in braces that looks like a name is a config error
# (command) or left alone (manual instructions).
TEMPLATE_FIELDS = ("version", "tag", "sha", "environment", "project", "deployment_id")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "****"
MIN_SECRET_LEN = 4


@dataclass(frozen=True)
class DeployContext:
    """Everything a driver knows about the deploy it performs, as plain values."""

    deployment_id: int
    attempt: int
    project: str
    environment: str
    version: str
    tag: str
    sha: str
    # Where a CD system reports back; the webhook driver puts it in its payload.
    callback_url: str | None = None
    # Told the process group of a command as soon as it starts (the deploy job records it, so
    # the reaper can stop what the command started if the worker dies). Not a template field.
    on_process: Callable[[int], None] | None = field(default=None, compare=False, repr=False)

    def fields(self) -> dict[str, str]:
        """Return the template fields of this deploy as strings."""
        return {
            "version": self.version,
            "tag": self.tag,
            "sha": self.sha,
            "environment": self.environment,
            "project": self.project,
            "deployment_id": str(self.deployment_id),
        }


class Outcome(Enum):
    """How a driver run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WAITING = "waiting"  # the deploy goes on elsewhere; a person or a callback ends it


@dataclass(frozen=True)
class DriverResult:
    """The outcome of one driver run with a one-sentence explanation."""

    outcome: Outcome
    message: str = ""


class Driver(Protocol):
    """Something that performs a deploy, streaming log lines and polling for a stop request."""

    def run(
        self, ctx: DeployContext, log: Callable[[str], None], should_stop: Callable[[], bool]
    ) -> DriverResult:
        """Perform the deploy described by ctx."""
        ...


class DriverConfigError(ValueError):
    """A driver's settings are invalid; the message is a sentence naming the bad key.

    `key` is that setting ("argv", "env.NAME"), so config sync can name its TOML path and line;
    when not given it is read from the sentence's "Setting 'key'" (as every driver words it).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        if key is None:
            named = re.match(r"(?:Unknown )?[Ss]etting '([\w.-]+)'", message)
            key = named.group(1) if named else None
        self.key = key


def placeholders(template: str) -> list[str]:
    """Return the placeholder names used in a template string, in order."""
    return _PLACEHOLDER.findall(template)


def render(template: str, fields: Mapping[str, str]) -> str:
    """Replace known {field} placeholders in one pass, leaving everything else literal.

    One pass matters: a value that itself contains "{tag}" must not be expanded again.
    """

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        return fields[name] if name in fields else match.group(0)

    return _PLACEHOLDER.sub(repl, template)


def mask(line: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret (non-empty, at least 4 characters) with ****."""
    # Longest first, so a secret that contains a shorter one is masked whole.
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        line = line.replace(secret, MASK)
    return line


def mask_cut_tail(text: str, secrets: Iterable[str]) -> str:
    """Mask secrets in a truncated text, including a secret cut in half by the truncation."""
    text = mask(text, secrets)
    for secret in secrets:
        if len(secret) < MIN_SECRET_LEN:
            continue
        for k in range(len(secret) - 1, 0, -1):
            if text.endswith(secret[:k]):
                return text[: len(text) - k] + MASK
    return text


def secrets_of(
    settings: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Return the secret values configured for a driver, for masking logs: literal ones and the
    value of every `*_env` setting (a secret named by environment variable, read now from
    environ, default os.environ)."""
    found: list[str] = []
    kind = settings.get("kind")
    if kind == "command":
        secrets = settings.get("secrets")
        if isinstance(secrets, Mapping):
            found = [v for v in secrets.values() if isinstance(v, str) and v]
    elif kind == "webhook":
        secret = settings.get("secret")
        if isinstance(secret, str) and secret:
            found = [secret]
    env = os.environ if environ is None else environ
    for key, name in settings.items():
        if isinstance(key, str) and key.endswith("_env") and isinstance(name, str):
            value = env.get(name)
            if value and value not in found:
                found.append(value)
    return found


def check_keys(settings: Mapping[str, Any], kind: str, allowed: Iterable[str]) -> None:
    """Refuse settings keys the driver does not know (a typo must not silently drop a setting)."""
    known = {"kind", *allowed}
    for key in settings:
        if key not in known:
            raise DriverConfigError(
                f"Unknown setting {key!r} for the {kind} driver; "
                f"expected one of: {', '.join(sorted(known))}.",
                key=str(key),
            )


def timeout_setting(settings: Mapping[str, Any], default: float) -> float:
    """Return the 'timeout' setting: a positive number of seconds (true and false are not)."""
    timeout = settings.get("timeout", default)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise DriverConfigError("Setting 'timeout' must be a positive number of seconds.")
    return float(timeout)


def list_setting(
    settings: Mapping[str, Any], key: str, valid: Callable[[str], object], what: str
) -> list[str]:
    """Return a setting that is a list of strings each passing valid (default empty); the
    error says it must be a list of what."""
    value = settings.get(key, [])
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and valid(item) for item in value
    ):
        raise DriverConfigError(f"Setting '{key}' must be a list of {what}.")
    return list(value)
