"""Webhook driver: a signed JSON POST to a team's CD system, which reports back later.

Safety choices:
- The target is checked by netguard (http/https only, no internal addresses unless allow-listed)
  and the connection goes to the very address that was checked, with the original Host header and
  TLS server name, so a second DNS answer (rebinding) cannot redirect it.
- Redirects are never followed: a 3xx answer fails the deploy with a sentence naming the
  Location. Following would need a re-check per hop and would turn the POST into a GET on 301/302;
  an admin can configure the final URL instead.
- Environment proxies are ignored (trust_env=False), since a proxy would resolve the name itself.
- The shared secret may be named by environment variable (`secret_env`): only the name is stored;
  the value is read from the worker's environment when a deploy runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from relapp.domain.secretvars import variable_problem
from relapp.drivers.base import (
    DeployContext,
    DriverConfigError,
    DriverResult,
    Outcome,
    list_setting,
    mask,
    mask_cut_tail,
    timeout_setting,
)
from relapp.drivers.netguard import (
    BlockedTarget,
    Resolver,
    Target,
    fetch,
    resolve_target,
)

SIGNATURE_HEADER = "X-Relapp-Signature-256"
DELIVERY_HEADER = "X-Relapp-Delivery"
MIN_SECRET_LENGTH = 16
DEFAULT_TIMEOUT = 10.0
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_BODY_SNIPPET_BYTES = 2048  # how much of a failed answer is shown in the log
_BODY_SNIPPET_LINES = 20


def sign(secret: str, body: bytes) -> str:
    """Return the signature header value "sha256=<hex hmac>" of body under secret."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Return True only if header is a valid sha256 signature of body; fails closed."""
    if not secret or not header:
        return False
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:  # also refuses "sha1=" and anything malformed
        return False
    expected = sign(secret, body).removeprefix("sha256=")
    return hmac.compare_digest(expected.encode("ascii"), match.group(1).lower().encode("ascii"))


def payload(ctx: DeployContext) -> bytes:
    """Return the compact, key-sorted JSON body sent for a deploy."""
    data = {
        "deployment_id": ctx.deployment_id,
        "attempt": ctx.attempt,
        "project": ctx.project,
        "environment": ctx.environment,
        "version": ctx.version,
        "tag": ctx.tag,
        "sha": ctx.sha,
        "callback_url": ctx.callback_url,
    }
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")


class WebhookDriver:
    """POSTs a signed deploy request and waits (by default) for the CD system's callback."""

    SETTINGS = ("url", "secret", "secret_env", "timeout", "allow_hosts", "wait")

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        secret_env: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        allow_hosts: Sequence[str] = (),
        wait: bool = True,
        resolver: Resolver | None = None,
    ) -> None:
        """Create a driver for url, signing with secret or with the value of the environment
        variable secret_env (read at run time); resolver is only for tests (default
        getaddrinfo)."""
        self.url = url
        self.literal_secret = secret
        self.secret_env = secret_env
        self.timeout = float(timeout)
        self.allow_hosts = tuple(allow_hosts)
        self.wait = wait
        self.resolver = resolver

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> WebhookDriver:
        """Build the driver from TOML settings (keys checked by build_driver), raising
        DriverConfigError naming a bad value."""
        url = settings.get("url")
        if not isinstance(url, str) or not url:
            raise DriverConfigError("Setting 'url' of the webhook driver must be a URL string.")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise DriverConfigError(f"Setting 'url' is not a valid URL: {exc}.") from exc
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise DriverConfigError("Setting 'url' must be an http:// or https:// URL with a host.")
        if parts.username is not None or parts.password is not None:
            raise DriverConfigError(
                "Setting 'url' must not contain a user name or password: the request is "
                "authenticated by its signature, whose shared secret belongs in an environment "
                "variable named by 'secret_env' (or in 'secret').",
                key="url",
            )
        secret, secret_env = _secret_settings(settings)
        timeout = timeout_setting(settings, DEFAULT_TIMEOUT)
        allow_hosts = list_setting(settings, "allow_hosts", bool, "host or host:port strings")
        wait = settings.get("wait", True)
        if not isinstance(wait, bool):
            raise DriverConfigError("Setting 'wait' must be true or false.")
        return cls(
            url, secret, secret_env=secret_env, timeout=timeout, allow_hosts=allow_hosts, wait=wait
        )

    @property
    def secret(self) -> str | None:
        """The shared secret: the literal one, or the environment variable's value now."""
        if self.secret_env is not None:
            return os.environ.get(self.secret_env) or None
        return self.literal_secret

    def secret_problem(self) -> str | None:
        """Why this deploy cannot be signed (a sentence), or None when it can."""
        if self.secret_env is None:
            return None
        value = os.environ.get(self.secret_env)
        if not value:
            return (
                f"The webhook secret is read from the environment variable {self.secret_env}, "
                "which is not set for the worker; set it there and deploy again."
            )
        if len(value) < MIN_SECRET_LENGTH:
            return (
                f"The webhook secret in the environment variable {self.secret_env} is shorter "
                f"than {MIN_SECRET_LENGTH} characters; set a longer one and deploy again."
            )
        return None

    @property
    def secrets(self) -> list[str]:
        """Return the values that must never appear in a log line."""
        return [self.secret] if self.secret else []

    def run(
        self, ctx: DeployContext, log: Callable[[str], None], should_stop: Callable[[], bool]
    ) -> DriverResult:
        """Send the signed deploy request and translate the answer into an outcome."""

        def emit(line: str) -> None:
            log(mask(line, self.secrets))

        def result(outcome: Outcome, message: str) -> DriverResult:
            emit(message)
            return DriverResult(outcome, mask(message, self.secrets))

        if should_stop():
            return result(Outcome.FAILED, "stopped")
        problem = self.secret_problem()
        secret = self.secret
        if problem is not None or secret is None:
            return result(Outcome.FAILED, problem or "The webhook has no secret to sign with.")
        try:
            target = resolve_target(self.url, self.allow_hosts, self.resolver)
        except BlockedTarget as exc:
            return result(Outcome.FAILED, f"Webhook target refused: {exc}")

        body = payload(ctx)
        delivery = str(uuid.uuid4())
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "relapp-webhook/1",
            SIGNATURE_HEADER: sign(secret, body),
            DELIVERY_HEADER: delivery,
        }
        emit(f"POST {target.display()} (delivery {delivery})")
        try:
            status, location, snippet = self._post(target, headers, body)
        except httpx.TimeoutException:
            return result(Outcome.FAILED, f"The webhook did not answer within {self.timeout:g} s.")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return result(
                Outcome.FAILED, f"The webhook request to {target.display()} failed: {exc}."
            )

        emit(f"HTTP {status}")
        if 200 <= status < 300:
            if self.wait:
                return result(
                    Outcome.WAITING,
                    f"The CD system accepted the deploy (HTTP {status}); "
                    "waiting for it to report back.",
                )
            return result(Outcome.SUCCEEDED, f"The CD system accepted the deploy (HTTP {status}).")
        for line in snippet:
            emit(f"  {line}")
        if 300 <= status < 400:
            return result(
                Outcome.FAILED,
                f"The webhook answered HTTP {status} (redirect to {location or 'nowhere'}); "
                "relapp does not follow webhook redirects, so configure the final URL.",
            )
        return result(Outcome.FAILED, f"The webhook answered HTTP {status}.")

    def _post(
        self, target: Target, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str | None, list[str]]:
        """POST to the checked addresses in turn; return status, Location and a body snippet."""
        extra = {k: v for k, v in headers.items() if k.lower() != "host"}
        status, answer, snippet = fetch(
            target, "POST", headers=extra, content=body, timeout=self.timeout,
            max_bytes=_BODY_SNIPPET_BYTES, read_body=lambda code: not 200 <= code < 300,
        )
        return status, answer.get("location"), self._lines(snippet)

    def _lines(self, snippet: bytes) -> list[str]:
        """Turn the start of a response body into a few masked log lines."""
        text = snippet[:_BODY_SNIPPET_BYTES].decode("utf-8", errors="replace")
        lines = [line.rstrip("\r") for line in text.splitlines()][:_BODY_SNIPPET_LINES]
        if lines and len(snippet) >= _BODY_SNIPPET_BYTES:
            lines[-1] = mask_cut_tail(lines[-1], self.secrets) + " [truncated]"
        return [mask(line, self.secrets) for line in lines]


def _secret_settings(settings: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The literal secret or the name of the variable holding it: exactly one must be given."""
    secret = settings.get("secret")
    secret_env = settings.get("secret_env")
    if secret is not None and secret_env is not None:
        raise DriverConfigError(
            "Setting 'secret_env' and setting 'secret' of the webhook driver exclude each other; "
            "keep only 'secret_env'.",
            key="secret_env",
        )
    if secret_env is not None:
        problem = variable_problem(secret_env)
        if problem is not None:
            raise DriverConfigError(f"Setting 'secret_env' {problem}.", key="secret_env")
        return None, str(secret_env)
    if not isinstance(secret, str) or not secret:
        raise DriverConfigError(
            "Setting 'secret' of the webhook driver is required (or 'secret_env', the name of an "
            "environment variable holding it): the CD system checks the request's signature "
            "with it.",
            key="secret",
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise DriverConfigError(
            f"Setting 'secret' must be at least {MIN_SECRET_LENGTH} characters long "
            f"(it has {len(secret)}); use a long random value, ideally from an environment "
            "variable named by 'secret_env'.",
            key="secret",
        )
    return secret, None


def signing_secret(settings: Mapping[str, Any]) -> str | None:
    """The secret a webhook environment's reports are signed with, read now (the literal
    `secret`, or the value of the variable named by `secret_env`); None when there is none, so
    that a signature check fails closed."""
    if settings.get("kind") != "webhook":
        return None
    name = settings.get("secret_env")
    if isinstance(name, str) and name:
        value = os.environ.get(name)
    else:
        value = settings.get("secret")
    return value if isinstance(value, str) and value else None

