"""Webhook driver: a signed JSON POST to a team's CD system, which reports back later.

Safety choices:
- The target is checked by netguard (http/https only, no internal addresses unless allow-listed)
  and the connection goes to the very address that was checked, with the original Host header and
  TLS server name, so a second DNS answer (rebinding) cannot redirect it.
- Redirects are never followed: a 3xx answer fails the deploy with a sentence naming the
  Location. Following would need a re-check per hop and would turn the POST into a GET on 301/302;
  an admin can configure the final URL instead.
- Environment proxies are ignored (trust_env=False), since a proxy would resolve the name itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

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

    SETTINGS = ("url", "secret", "timeout", "allow_hosts", "wait")

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        allow_hosts: Sequence[str] = (),
        wait: bool = True,
        resolver: Resolver | None = None,
    ) -> None:
        """Create a driver for url; resolver is only for tests (default getaddrinfo)."""
        self.url = url
        self.secret = secret
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
                "Setting 'url' must not contain a user name or password; "
                "the request is authenticated by its signature."
            )
        secret = settings.get("secret")
        if not isinstance(secret, str) or not secret:
            raise DriverConfigError(
                "Setting 'secret' of the webhook driver is required: "
                "the CD system checks the request's signature with it."
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise DriverConfigError(
                f"Setting 'secret' must be at least {MIN_SECRET_LENGTH} characters long."
            )
        timeout = timeout_setting(settings, DEFAULT_TIMEOUT)
        allow_hosts = list_setting(settings, "allow_hosts", bool, "host or host:port strings")
        wait = settings.get("wait", True)
        if not isinstance(wait, bool):
            raise DriverConfigError("Setting 'wait' must be true or false.")
        return cls(url, secret, timeout=timeout, allow_hosts=allow_hosts, wait=wait)

    @property
    def secrets(self) -> list[str]:
        """Return the values that must never appear in a log line."""
        return [self.secret]

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
            SIGNATURE_HEADER: sign(self.secret, body),
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
