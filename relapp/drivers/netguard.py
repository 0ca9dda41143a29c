"""SSRF guard: refuse outbound HTTP targets that resolve to internal addresses.

An `allow_hosts` entry (a driver's, or RELAPP_ALLOW_HOSTS) opens its host to private, loopback and
other internal addresses, never to cloud metadata or link-local ones: those hand out the
machine's credentials, and no deploy target or version URL lives there."""

from __future__ import annotations

import ipaddress
import socket
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A resolver maps (host, port) to address strings; the default is getaddrinfo. Tests inject one to
# show that the connection goes to the address that was checked, not to a second DNS answer.
Resolver = Callable[[str, int], list[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task credentials
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud (classic)
    ipaddress.ip_address("168.63.129.16"),  # Azure wire server (a public-looking address)
}


class BlockedTarget(ValueError):
    """An outbound URL is not allowed; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts and the vetted addresses a client must connect to."""

    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal without brackets
    port: int
    path: str  # path plus "?query", never empty
    addresses: tuple[str, ...]
    allowed_explicitly: bool

    @property
    def host_header(self) -> str:
        """Return the Host header value for this target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    def display(self) -> str:
        """Return the URL without query string, safe to log (a query may carry a token)."""
        path = self.path.split("?", 1)[0]
        return f"{self.scheme}://{self.host_header}{path}"


def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    """Resolve host with getaddrinfo and return every address it gives."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address.teredo is not None:
        embedded = address.teredo[1]
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded


def never_allowed_reason(address: IPAddress) -> str | None:
    """Why no allow_hosts entry opens an address (a short phrase), or None: cloud metadata
    services and link-local addresses, also when carried inside an IPv6 address."""
    embedded = _embedded(address)
    if embedded is not None:
        inner = never_allowed_reason(embedded)
        return None if inner is None else f"{inner} (embedded in {address})"
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "link-local"
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Return why an address is internal (a short phrase), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address reach that address; judge the embedded one.
        embedded = _embedded(address)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return None if inner is None else f"{inner} (embedded in {address})"
        if address.is_site_local:
            return "site-local"
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "carrier-grade NAT"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def is_ip_literal(host: str) -> bool:
    """Return True when host is an IP address literal rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_allowed(host: str, port: int, allow_hosts: Sequence[str]) -> bool:
    """Return True when host or host:port is listed in allow_hosts."""
    bare = host.rstrip(".").lower()
    wrapped = f"[{bare}]" if ":" in bare else bare
    candidates = {bare, wrapped, f"{wrapped}:{port}"}
    for entry in allow_hosts:
        item = entry.strip().lower()
        if item.rstrip(".") in candidates or item in candidates:
            return True
    return False


def resolve_target(
    url: str, allow_hosts: Sequence[str] = (), resolver: Resolver | None = None
) -> Target:
    """Parse and resolve url, refusing it unless every address is public or the host is allowed."""
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in url):
        raise BlockedTarget("The URL contains spaces, control characters or backslashes.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedTarget(f"The URL is not valid: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BlockedTarget(f"Only http and https URLs are allowed, not {scheme or 'no scheme'!r}.")
    if parts.username is not None or parts.password is not None:
        raise BlockedTarget("The URL must not contain a user name or password.")
    raw_host = parts.hostname
    if not raw_host:
        raise BlockedTarget("The URL has no host.")
    try:
        host = raw_host.encode("idna").decode("ascii") if not raw_host.isascii() else raw_host
    except UnicodeError as exc:
        raise BlockedTarget(f"The host {raw_host!r} is not a valid host name.") from exc
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    # Percent-encode only what is not printable ASCII; existing escapes stay as they are.
    path = quote(path, safe=string.punctuation)

    allowed = _is_allowed(host, port, allow_hosts)
    try:
        found = (resolver or getaddrinfo_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise BlockedTarget(f"The host {host!r} could not be resolved: {exc}.") from exc
    if not found:
        raise BlockedTarget(f"The host {host!r} did not resolve to any address.")
    addresses: list[str] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError as exc:
            raise BlockedTarget(f"The host {host!r} resolved to {text!r}, not an address.") from exc
        reason = blocked_reason(address)
        never = never_allowed_reason(address)
        what = (
            f"The address {host}"
            if is_ip_literal(host)
            else f"The host {host!r} resolves to {address}, which"
        )
        if never is not None:
            # Even an allow-listed host: metadata and link-local answers are never contacted.
            raise BlockedTarget(
                f"{what} is {never}; relapp never contacts such an address, whatever allow_hosts says."
            )
        # Any internal answer blocks the host: a mixed answer is how rebinding attacks start.
        if reason is not None and not allowed:
            raise BlockedTarget(
                f"{what} is {reason}; add {host!r} to allow_hosts "
                "if this internal target is intended."
            )
        if text not in addresses:
            addresses.append(text)
    return Target(scheme, host, port, path, tuple(addresses), allowed)


def check_url(url: str, allow_hosts: Sequence[str] = (), resolver: Resolver | None = None) -> None:
    """Raise BlockedTarget unless url is http(s) and resolves only to public addresses."""
    resolve_target(url, allow_hosts, resolver)


def fetch(target: Target, method: str, *, headers: Mapping[str, str], timeout: float,
          max_bytes: int, content: bytes | None = None,
          read_body: Callable[[int], bool] = lambda status: True) -> tuple[int, httpx.Headers, bytes]:
    """Send one request to the addresses `resolve_target` vetted, in turn (never a fresh DNS
    answer, so a rebinding name cannot steer it elsewhere), without following redirects.

    Returns the status, the headers and at most `max_bytes` of the body (the body is read only
    when `read_body(status)`; a body cut at the limit is returned as it is). Raises httpx errors;
    a connection refused on one address tries the next.
    """
    import httpx

    deadline = time.monotonic() + timeout
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and not is_ip_literal(target.host):
        # Connect to the vetted IP but verify the certificate for the configured name.
        extensions["sni_hostname"] = target.host
    last_error: httpx.HTTPError | None = None
    with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False) as client:
        for address in target.addresses:
            url = httpx.URL(scheme=target.scheme, host=address, port=target.port,
                            raw_path=target.path.encode("ascii"))
            request = client.build_request(method, url, headers={"Host": target.host_header, **headers},
                                           content=content, extensions=extensions)
            try:
                response = client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc  # try the next vetted address
                continue
            body = b""
            try:
                if read_body(response.status_code):
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            break
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("deadline passed", request=request)
            finally:
                response.close()
            return response.status_code, response.headers, body
    assert last_error is not None  # resolve_target never returns an empty address list
    raise last_error
